"""Passwords in URLs stay out of what sweeper shows: messages, logs, reports. Imports nothing, so the CLI
can mask its errors without paying for any other module."""

from __future__ import annotations

import re

# scheme://user:PASSWORD@ -- the password ends at the last '@' before the host (passwords may hold '@').
_CREDENTIALS = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@'\"`]*:)[^\s/'\"`]*@")


def mask_uri(text: str) -> str:
    """`text` with the password of every URI in it replaced by *** (postgresql://u:***@host/db)."""
    return _CREDENTIALS.sub(r"\1***@", text)
