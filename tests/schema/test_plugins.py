"""User code named by a spec (`file.py:Attr`, `package.module:Attr`): real files in tmp_path, no mocks."""

from __future__ import annotations

import hashlib
import pickle
import sys
import textwrap
from pathlib import Path

import pytest

from sweeper.errors import UserError
from sweeper.schema import plugins
from sweeper.schema.plugins import PluginError, check_arguments, is_reference, load

NETS = """\
class MyNet:
    def __init__(self, width: int, depth: int = 3, activation: str = "relu", num_classes: int = 10):
        self.width, self.depth = width, depth


def build(width: int, *, scale: float = 1.0, **extra) -> MyNet:
    return MyNet(width)


class Outer:
    class Inner:
        pass
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path):
    """Each test starts with nothing loaded, and leaves no module of its tmp_path behind."""
    plugins.clear_cache()
    yield
    plugins.clear_cache()
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.parametrize(
    "text",
    [
        "nets.py:MyNet",
        "lib/nets.py:MyNet",
        "/abs/nets.py:Outer.Inner",
        "../up.py:f",
        "mypkg.losses:poly_loss",
        "json:dumps",
    ],
)
def test_references(text: str) -> None:
    assert is_reference(text)


@pytest.mark.parametrize(
    "text",
    [
        "relu",
        "",
        "nets.py",
        "nets.py:",
        ":MyNet",
        "http://x.org/nets.py:Net",
        "C:/nets.py:Net",
        "C:\\x\\nets.py:Net",
        "nets.py:1st",
        "nets.py: MyNet",
        "a..b:c",
        ".nets:Net",
        "lib/:Net",
        "nets.py:My-Net",
        "12:30",
        "import:x",
    ],
)
def test_not_references(text: str) -> None:
    assert not is_reference(text)


def test_file_reference_loads_class_function_and_nested(tmp_path: Path) -> None:
    nets = write(tmp_path / "nets.py", NETS)
    net, build = load("nets.py:MyNet", tmp_path), load("nets.py:build", tmp_path)
    assert net.obj.__name__ == "MyNet" and net.kind == "file" and net.reference == "nets.py:MyNet"
    assert net.source == nets.resolve() and net.digest == hashlib.sha256(nets.read_bytes()).hexdigest()[:12]
    assert build.obj.__module__ == net.obj.__module__  # one module for the file, whatever it is asked for
    assert build.obj(5).width == 5
    assert load("nets.py:Outer.Inner", tmp_path).obj.__qualname__ == "Outer.Inner"
    assert load(f"{nets}:MyNet", Path("/elsewhere")).obj is net.obj  # an absolute path ignores the spec's folder
    assert pickle.loads(pickle.dumps(net.obj)) is net.obj  # the module's name finds it again
    assert plugins.loaded_references()[0] == net


def test_module_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dumps = load("json:dumps", tmp_path)
    assert dumps.kind == "module" and dumps.source is not None and dumps.source.name == "__init__.py"
    assert len(dumps.digest) == 12
    write(tmp_path / "site" / "plugpkg_a" / "__init__.py", "")
    write(
        tmp_path / "site" / "plugpkg_a" / "losses.py",
        "def poly_loss(logits, target, epsilon: float = 1.0):\n    return 0\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    poly = load("plugpkg_a.losses:poly_loss", tmp_path)
    assert poly.obj.__name__ == "poly_loss" and poly.source == (tmp_path / "site/plugpkg_a/losses.py").resolve()
    # A module beside the spec imports without being on sys.path, which is left as it was.
    write(tmp_path / "spec_dir" / "beside_mod.py", "VALUE = 7\n")
    before = list(sys.path)
    assert load("beside_mod:VALUE", tmp_path / "spec_dir").obj == 7
    assert sys.path == before


def test_not_importable_module(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"No module named 'no_such_pkg_x'.*path: `no_such_pkg_x/mod\.py:f`"):
        load("no_such_pkg_x.mod:f", tmp_path)
    write(tmp_path / "notes.txt", "hello")
    with pytest.raises(PluginError, match=r"notes\.txt.*\.py files only"):
        load("notes.txt:f", tmp_path)


def test_bad_paths_say_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load("lib/missing.py:Net", tmp_path)
    msg = str(err.value)
    assert str((tmp_path / "lib" / "missing.py").resolve()) in msg and "relative to the spec's folder" in msg
    assert "\n" not in msg
    write(tmp_path / "lib" / "nets.txt", "x = 1\n")
    with pytest.raises(PluginError, match=r"not a \.py file"):
        load("lib/nets.txt:x", tmp_path)
    (tmp_path / "pkg.py").mkdir()
    with pytest.raises(PluginError, match="is a folder"):
        load("pkg.py:x", tmp_path)
    with pytest.raises(PluginError, match="does not name code"):
        load("relu", tmp_path)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", "import math\n\ndef f(:\n    pass\n")
    with pytest.raises(PluginError) as err:
        load("broken.py:f", tmp_path)
    assert "SyntaxError" in str(err.value) and "broken.py:3" in str(err.value)


def test_exception_at_import_names_file_line_and_text(tmp_path: Path) -> None:
    write(tmp_path / "boom.py", "import math\n\n\nx = 1 / 0\n")
    with pytest.raises(PluginError) as err:
        load("boom.py:x", tmp_path)
    msg = str(err.value)
    assert "ZeroDivisionError: division by zero" in msg and f"{tmp_path.resolve() / 'boom.py'}:4" in msg
    assert "Traceback" not in msg and not any(n.startswith("_sweeper_user_boom") for n in sys.modules)
    # Raised in a sibling it imports: the user's file's line, and where inside it really was.
    write(tmp_path / "sib_bad_a.py", "def f():\n    raise KeyError('k')\n")
    write(tmp_path / "calls.py", "import sib_bad_a\n\nsib_bad_a.f()\n")
    with pytest.raises(PluginError, match=r"KeyError: 'k' at .*calls\.py:3 \(inside .*sib_bad_a\.py:2\)"):
        load("calls.py:x", tmp_path)


def test_missing_attribute_suggests(tmp_path: Path) -> None:
    write(tmp_path / "nets.py", "import json\n" + NETS)
    with pytest.raises(PluginError) as err:
        load("nets.py:MyNte", tmp_path)
    msg = str(err.value)
    assert "defines no `MyNte`" in msg and "Did you mean 'MyNet'" in msg
    assert "Its public classes and functions: MyNet, Outer, build." in msg  # not `json`, which it imported
    with pytest.raises(PluginError, match=r"`Outer` defines no `Innr`\. Did you mean 'Inner'"):
        load("nets.py:Outer.Innr", tmp_path)


def test_arguments(tmp_path: Path) -> None:
    write(tmp_path / "nets.py", NETS)
    net, build = load("nets.py:MyNet", tmp_path).obj, load("nets.py:build", tmp_path).obj
    sweeper_passes = ("activation", "num_classes")
    assert check_arguments(net, {"width": 64, "depth": "5"}, supplied=sweeper_passes) == []
    [typo] = check_arguments(net, {"widht": 64}, supplied=("width",))
    assert typo.startswith("MyNet(width: int, depth: int = 3") and "no argument `widht`" in typo
    assert "Did you mean 'width'?" in check_arguments(net, {"widht": 64, "width": 1})[0]
    [wrong] = check_arguments(net, {"width": "wide"})
    assert "`width` must be int, not 'wide'" in wrong and wrong.startswith("MyNet(")
    [missing] = check_arguments(net, {"depth": 2}, supplied=sweeper_passes)
    assert "needs `width`" in missing
    assert check_arguments(build, {"width": 1, "anything": 2}) == []  # **extra takes any name
    [unaccepted] = check_arguments(net, {"width": 1}, supplied=("params",))
    assert "must accept `params`" in unaccepted
    [twice] = check_arguments(net, {"width": 1, "activation": "gelu"}, supplied=sweeper_passes)
    assert "`activation` is passed by sweeper itself" in twice
    assert "not callable" in check_arguments(3, {})[0]


def test_arguments_with_string_annotations(tmp_path: Path) -> None:
    write(
        tmp_path / "lazy.py",
        """\
        from __future__ import annotations

        class Opaque:
            pass

        def f(width: int, gate: Opaque | None = None, later: Undefined = 1, scale: list[float] = ()):
            return width
        """,
    )
    f = load("lazy.py:f", tmp_path).obj
    [wrong] = check_arguments(f, {"width": "wide", "gate": "x", "later": "y", "scale": [1, 2]})
    assert "`width` must be int" in wrong  # `gate` (no pydantic schema) and `later` (unresolvable) are skipped


def test_same_file_once_and_digest_follows_edits(tmp_path: Path) -> None:
    nets = write(tmp_path / "nets.py", "class Net:\n    size = 1\n")
    first = load("nets.py:Net", tmp_path)
    again = load("./nets.py:Net", tmp_path)
    assert again.obj is first.obj and again.digest == first.digest and again.reference == "./nets.py:Net"
    nets.write_text("class Net:\n    size = 22\n")
    assert load("nets.py:Net", tmp_path).obj.size == 1  # cached until the cache is cleared
    plugins.clear_cache()
    edited = load("nets.py:Net", tmp_path)
    assert edited.obj.size == 22 and edited.digest != first.digest
    assert edited.digest == hashlib.sha256(nets.read_bytes()).hexdigest()[:12]


def test_two_files_named_alike_do_not_collide(tmp_path: Path) -> None:
    write(tmp_path / "a" / "nets.py", "WHO = 'a'\n")
    write(tmp_path / "b" / "nets.py", "WHO = 'b'\n")
    a, b = load("a/nets.py:WHO", tmp_path), load("nets.py:WHO", tmp_path / "b")
    assert (a.obj, b.obj) == ("a", "b") and a.source != b.source


def test_file_imports_its_sibling(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "blocks_sib_a.py", "class Block:\n    pass\n")
    write(tmp_path / "lib" / "model.py", "from blocks_sib_a import Block\n\nclass Net(Block):\n    pass\n")
    before = list(sys.path)
    net = load("lib/model.py:Net", tmp_path).obj
    assert net.__mro__[1].__name__ == "Block" and sys.path == before


def test_registry(tmp_path: Path) -> None:
    write(tmp_path / "a" / "nets.py", NETS)
    write(tmp_path / "b" / "nets.py", NETS)
    with pytest.raises(PluginError, match="load the spec that names it first"):
        plugins.resolve("nets.py:MyNet")
    net = plugins.resolve("nets.py:MyNet", tmp_path / "a")
    assert plugins.resolve("nets.py:MyNet") is net
    found = plugins.lookup("nets.py:MyNet")
    assert found is not None and found.obj is net and plugins.lookup("other.py:X") is None
    # The same text in a spec in another folder: fine with the folder, ambiguous without it.
    other = plugins.resolve("nets.py:MyNet", tmp_path / "b")
    assert other is not net and plugins.resolve("nets.py:MyNet", tmp_path / "a") is net
    with pytest.raises(PluginError, match=r"names .*a/nets\.py and .*b/nets\.py in this process"):
        plugins.resolve("nets.py:MyNet")
    assert [loaded.reference for loaded in plugins.loaded_references()] == ["nets.py:MyNet", "nets.py:MyNet"]
