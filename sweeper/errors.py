"""The one exception type a user can cause (the CLI prints it as a paragraph and exits 2), warnings, and the
"did you mean" every message about a misspelt name uses."""

import difflib
import sys
from collections.abc import Iterable

from sweeper.secrets import mask_uri


class UserError(Exception):
    """Bad input (spec, name, dataset, server): the message says what is wrong and where."""


class DatasetMissing(UserError):
    """No CIFAR-10 where sweeper looked; the message says where to put it."""


class Pruned(Exception):
    """Raised from an epoch hook when the sweeper's pruner stops a cell early; not a failure."""


def warn(message: str) -> None:
    """Tell the user something went less well than asked, without stopping: one `warning:` line on stderr.

    The one channel library code warns through, so every warning reads alike and tests can catch them.
    """
    print(f"warning: {mask_uri(message)}", file=sys.stderr, flush=True)  # library errors quote URIs whole


def did_you_mean(word: str, options: Iterable[str], cutoff: float = 0.5) -> str:
    """ " Did you mean 'a' or 'b'?" for the options closest to a misspelt word, "" when none is close."""
    close = difflib.get_close_matches(str(word), list(options), n=3, cutoff=cutoff)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
