"""YAML loading that keeps line numbers, so errors can say where in the file a problem is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def read_text(path: Path, what: str, error: type[Exception]) -> str:
    """Read a UTF-8 text file or raise ``error`` naming the file and the problem."""
    if not path.exists():
        raise error(f"{path}: {what} not found (looked for {path.resolve()})")
    if path.is_dir():
        raise error(f"{path}: is a directory, expected a {what}")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise error(f"{path}: looks like a binary file, expected a {what} in UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path} line {line}: not valid UTF-8 ({exc.reason}); save the {what} as UTF-8") from None


def load_with_lines(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML safely; return the data and the node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_alias_expansion(node)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise YamlSyntaxError(f"YAML syntax error: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from None
    return data, node


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
