"""Write each notebook from its text source: ``python notebooks/build.py``.

Every ``notebooks/<name>.ipynb`` has a source ``notebooks/<name>.py`` in jupytext's percent format
(``# %%`` starts a code cell, ``# %% [markdown]`` a markdown one, ``tags=["parameters"]`` marks
papermill's cell). Edit the ``.py`` (reviewed and linted like any Python file) and run this script,
or edit the notebook in JupyterLab: jupytext pairs the two files (``[tool.jupytext]`` in
pyproject.toml) and saves both. The ``.ipynb`` is written with outputs stripped and kernelspec
``python3``; a cell whose text did not change keeps its id, so a rebuild changes only what was
edited. tests/test_notebooks_source.py checks that every committed notebook matches its source.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def sources(folder: Path = HERE) -> list[Path]:
    """The notebooks' text sources in ``folder`` (every ``.py`` but this script)."""
    return sorted(p for p in folder.glob("*.py") if p.name != Path(__file__).name)


def notebook_from(source: Path) -> nbformat.NotebookNode:
    """The notebook ``source`` describes, as it is committed: no outputs, the ``python3`` kernel,
    and the ids of cells that are unchanged since the committed ``.ipynb``."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    target = source.with_suffix(".ipynb")
    old_ids: dict[tuple[str, str], list[str]] = {}
    if target.exists():
        for cell in nbformat.read(target, as_version=4).cells:
            old_ids.setdefault((cell.cell_type, cell.source), []).append(cell.get("id"))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("lines_to_next_cell", None)
        ids = old_ids.get((cell.cell_type, cell.source))
        if ids:
            cell["id"] = ids.pop(0)
    nbformat.validator.normalize(nb)
    return nb


def main(argv: list[str] | None = None) -> None:
    for source in sources():
        target = source.with_suffix(".ipynb")
        nbformat.write(notebook_from(source), target)
        print(f"wrote {target.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
