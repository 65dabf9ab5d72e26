"""Notebooks are edited as text: each committed .ipynb matches its jupytext source and carries no outputs."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _build():
    spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_notebook_has_a_text_source_and_every_source_a_notebook():
    sources = {p.stem for p in _build().sources(ROOT / "notebooks")}
    assert sources == {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_matches_its_source_and_has_no_outputs(path):
    committed = nbformat.read(path, as_version=4)
    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    assert _cells(committed) == _cells(source), f"{path.name} differs from {path.stem}.py: run python notebooks/build.py"
    code = [c for c in committed.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    assert committed.metadata["kernelspec"]["name"] == "python3"
    assert _build().notebook_from(path.with_suffix(".py")) == committed  # a rebuild changes nothing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_source_is_python_that_parses(path):
    ast.parse(path.with_suffix(".py").read_text(), filename=str(path.with_suffix(".py")))


def test_an_edit_to_the_source_shows_as_a_mismatch(tmp_path):
    src = tmp_path / "n.py"
    src.write_text("# %% [markdown]\n# Hello\n\n# %%\nx = 1\n")
    nb = _build().notebook_from(src)
    nbformat.write(nb, tmp_path / "n.ipynb")
    src.write_text("# %% [markdown]\n# Hello\n\n# %%\nx = 2\n")
    assert _cells(nbformat.read(tmp_path / "n.ipynb", as_version=4)) != _cells(jupytext.read(src, fmt="py:percent"))
