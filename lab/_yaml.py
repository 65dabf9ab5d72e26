"""YAML loading that keeps line numbers, so errors can say where in the file a problem is."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .text import unstorable


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


#: Largest prompt file or input set read, in bytes (default 50 MB); set PROMPTLAB_MAX_FILE_BYTES to change it.
DEFAULT_MAX_FILE_BYTES = 50_000_000


def max_file_bytes() -> int:
    value = os.environ.get("PROMPTLAB_MAX_FILE_BYTES")
    if value is None:
        return DEFAULT_MAX_FILE_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = -1
    if limit < 1:
        raise ValueError(f"PROMPTLAB_MAX_FILE_BYTES must be a positive number of bytes, got {value!r}")
    return limit


def read_bytes(path: Path, what: str, error: type[Exception], limit: int | None = None) -> bytes:
    """Read a regular file of at most ``limit`` bytes (default :func:`max_file_bytes`), or raise ``error``.

    FIFOs, devices and sockets, and links to them, are refused before any byte is read (a FIFO would
    block forever, ``/dev/zero`` would fill memory). The file is opened without blocking and checked
    again on the open handle, so swapping the file between check and read does not get past it.
    """
    try:
        limit = limit if limit is not None else max_file_bytes()
    except ValueError as exc:
        raise error(f"{path}: {exc}") from None
    if unstorable(str(path)):  # the name would go into every run row: it must be text
        raise error(f"{ascii(str(path))}: the file name is not valid UTF-8; rename the {what}")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found (looked for {path.resolve()})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, expected {_a(what)}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is not a regular file ({_kind(st.st_mode)}); {_a(what)} must be a plain file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is not a regular file ({_kind(st.st_mode)}); {_a(what)} must be a plain file")
        if st.st_size > limit:
            raise error(f"{path}: the {what} is {st.st_size:,} bytes, over the limit of {limit:,}; "
                        "split it, or raise PROMPTLAB_MAX_FILE_BYTES")
        data = f.read(limit + 1)  # the file may grow after fstat
    if len(data) > limit:
        raise error(f"{path}: the {what} is over the limit of {limit:,} bytes; split it, or raise "
                    "PROMPTLAB_MAX_FILE_BYTES")
    return data


def _a(what: str) -> str:
    """``what`` with its article: "an input set", "a prompt file"."""
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_text(path: Path, what: str, error: type[Exception]) -> str:
    """Read a UTF-8 text file (see :func:`read_bytes` for what is refused) or raise ``error``."""
    data = read_bytes(path, what, error)
    if b"\x00" in data[:8192]:
        raise error(f"{path}: looks like a binary file, expected {_a(what)} in UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path} line {line}: not valid UTF-8 ({exc.reason}); save the {what} as UTF-8") from None


#: How deeply lists and mappings may nest in a prompt file or an input set.
MAX_DEPTH = 64


def load_with_lines(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML safely; return the data and the node tree (for line numbers). Refused: nesting
    deeper than :data:`MAX_DEPTH`, a key repeated in one mapping, aliases that expand too far."""
    _check_flow_depth(text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_nodes(node)
        _check_alias_expansion(node)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise YamlSyntaxError(f"YAML syntax error: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from None
    except RecursionError:
        raise YamlSyntaxError(f"YAML error: lists or mappings nest more than {MAX_DEPTH} deep; flatten them",
                              None) from None
    return data, node


def _check_flow_depth(text: str) -> None:
    """Refuse ``[[[[...`` / ``{{{{...`` nesting past :data:`MAX_DEPTH` before the parser recurses into it
    (a rough count: brackets inside quoted strings count too, so the bound is generous)."""
    depth = 0
    line = 1
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH * 4:
                raise YamlSyntaxError(f"YAML error: lists or mappings nest more than {MAX_DEPTH} deep; flatten them",
                                      line)
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            line += 1


def _check_nodes(root: yaml.Node | None) -> None:
    """Walk the node tree without recursion: refuse nesting past :data:`MAX_DEPTH` and a key that
    appears twice in one mapping (YAML would silently keep the last)."""
    stack = [(root, 1)] if root is not None else []
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and depth > MAX_DEPTH:
            raise YamlSyntaxError(f"YAML error: lists or mappings nest more than {MAX_DEPTH} deep; flatten them",
                                  node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode) and not node.value.isascii() and unstorable(node.value):
            raise YamlSyntaxError(f"YAML error: a value {unstorable(node.value)} (an escape such as \\ud800 in "
                                  "double quotes); write the character itself", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            _check_keys(node)
            stack.extend((n, depth + 1) for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((n, depth + 1) for n in node.value)


def _check_keys(node: yaml.MappingNode) -> None:
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            raise YamlSyntaxError(f"YAML error: the key {key.value[:80]!r} appears twice in one mapping (lines "
                                  f"{seen[key.value]} and {line}); YAML would keep only the last: keep one", line)
        seen[key.value] = line


#: How many nodes aliases may add when expanded; a few nested aliases ("billion laughs") otherwise
#: turn a 1 KB file into gigabytes of rendered prompt.
MAX_ALIAS_EXPANSION = 100_000


def _check_alias_expansion(root: yaml.Node | None) -> None:
    """Refuse YAML whose aliases (``*name``) expand to far more nodes than the file holds."""
    sizes: dict[int, int] = {}
    reused: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            if sizes[key] < 0:
                raise YamlSyntaxError("YAML error: an alias refers to the node that contains it (a cycle)",
                                      node.start_mark.line + 1)
            reused.append(node)
            return sizes[key]
        sizes[key] = -1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        total = 1 + sum(size(c) for c in children)
        sizes[key] = total
        return total

    if root is None:
        return
    expanded = size(root)
    if expanded - len(sizes) > MAX_ALIAS_EXPANSION:
        line = reused[0].start_mark.line + 1 if reused else None
        raise YamlSyntaxError(
            f"YAML aliases (&anchor / *alias) expand to {expanded:,} values, more than {MAX_ALIAS_EXPANSION:,} "
            "beyond what the file holds; write the values out instead of nesting aliases", line)


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest node along ``loc`` (keys and list indices) that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line
