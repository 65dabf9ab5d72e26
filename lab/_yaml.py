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
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise YamlSyntaxError(f"YAML syntax error: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML error: {exc}", None) from None
    return data, node


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
