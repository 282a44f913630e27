"""Space files: finding one (a shipped preset by name, from `spaces/presets/`, or any file
by path), reading it bounded, and loading it into a `Space` through the schema.

Any file is accepted or refused within about a second. A space file is at most `MAX_BYTES`
of UTF-8 YAML. It is read with a SafeLoader (no tag runs code) that also refuses duplicate
keys (the last one would silently win), nesting deeper than `MAX_DEPTH`, and more than
`MAX_VALUES` values, an alias counted as the values it repeats (a 1 KB alias bomb stands for
billions). It reads `1e-3` as the float YAML 1.2 makes of it, where YAML 1.1 (PyYAML) would
read a string.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from spaces.errors import SpaceError, show
from spaces.schema import NAME, parse
from spaces.space import Space

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_VALUES = 10_000  # a preset holds about 150; each costs PyYAML's pure-Python reader time
MERGE = "tag:yaml.org,2002:merge"
PRESETS = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    """The names of the shipped presets, as `load` takes them."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A shipped preset by name, or a space file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists() or NAME.fullmatch(name_or_path) is None:
        return path
    preset = PRESETS / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise SpaceError(
            f"unknown preset {show(name_or_path)}; shipped presets: {', '.join(preset_names())} "
            "(or give the path of a .yaml space file)"
        )
    return preset


def load(name_or_path: str) -> Space:
    """The space of a shipped preset or a space file; messages name the file, its path
    shortened to its last 80 characters."""
    path = resolve(name_or_path)
    where = str(path) if len(str(path)) <= 80 else "..." + str(path)[-77:]
    return loads(read_file(path), where)


def loads(data: bytes, where: str = "<space>") -> Space:
    """Validate the bytes of a space file: bounded YAML, then the schema."""
    return parse(read_yaml(data, where), where)


def read_file(path: Path) -> bytes:
    """The bytes of the space file `path`, refused if it is not a small regular file."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise SpaceError(f"space file {show(str(path))} is a directory, not a .yaml file")
        if not stat.S_ISREG(info.st_mode):
            raise SpaceError(f"space file {show(str(path))} is not a regular file")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpaceError(f"space file {show(str(path))} does not exist") from None
    except OSError as err:
        raise SpaceError(f"cannot read space file {show(str(path))}: {err.strerror}") from None
    if len(data) > MAX_BYTES:
        raise SpaceError(
            f"space file {show(str(path))} is over {MAX_BYTES:,} bytes; a space file is a "
            "short YAML mapping"
        )
    return data


def read_yaml(data: bytes, where: str) -> Any:
    """The YAML document in `data`, or a `SpaceError` giving the line and column."""
    if len(data) > MAX_BYTES:
        raise SpaceError(f"{where}: over {MAX_BYTES:,} bytes; a space file is a short mapping")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpaceError(
            f"{where}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the space file as UTF-8"
        ) from None
    loader = None
    try:
        loader = _Loader(text)
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where_in = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise SpaceError(f"{where}: malformed YAML{where_in}: {problem[:150]}") from None
    except yaml.reader.ReaderError as err:
        raise SpaceError(
            f"{where}: malformed YAML: character #x{err.character:04x} at offset {err.position} "
            "is not allowed in YAML text"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader with the bounds and the duplicate-key check described above."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._total = 0  # values read so far, each alias counted as the values it stands for
        self._values: dict[int, int] = {}  # id(node) -> values it stands for, once composed

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._values:  # its anchor is still being read
                raise ComposerError(None, None, "an alias inside its own anchor", mark)
            self._count(self._values[id(node)], mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        before = self._total
        self._count(1, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._values[id(node)] = self._total - before
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        """Counted as read, so a long list or an alias bomb stops early."""
        self._total += values
        if self._total > MAX_VALUES:
            raise ComposerError(
                None, None, f"over {MAX_VALUES:,} values (counting what aliases repeat)", mark
            )

    def construct_document(self, node: Node) -> Any:
        """Collections are filled after `construct_object` returns: the same rule there."""
        try:
            return super().construct_document(node)
        except yaml.YAMLError:
            raise
        except Exception as err:
            raise ConstructorError(
                None, None, f"cannot read a value ({type(err).__name__})", node.start_mark
            ) from None

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Any value PyYAML fails to convert (`!!int abc`, a 5,000-digit integer) is a
        YAML error at its line, never a bare ValueError."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception:  # each of PyYAML's converters fails in its own way
            value = node.value if isinstance(node, ScalarNode) else node.tag
            raise ConstructorError(
                None,
                None,
                f"cannot read {show(value)} as {node.tag.rsplit(':', 1)[-1]}",
                node.start_mark,
            ) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # `!!set 0`: PyYAML's own check reports it
            return super().construct_mapping(node, deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue  # `<<: *defaults`: merged keys may be overridden, by design
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: PyYAML's own check reports it
            if duplicate:
                raise ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.2 reads 1e-3 as a float; PyYAML (YAML 1.1) wants a dot and a signed exponent.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
