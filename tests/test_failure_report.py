"""A batch notebook that fails still leaves a report that says so: its HTML opens with a banner
(it failed, in which cell, why), and `run-notebook` prints the same reason in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab.errors import NotebookError
from lab.notebooks import run_notebook
from tests.chromium import browser, offline

ROOT = Path(__file__).resolve().parents[1]

RAISES = "rows = [1, 2, 3]\nrows[0] / (len(rows) - 3)"
DIES = "import os\nos.kill(os.getpid(), 9)"
# the kernel may die before or after it numbers the cell; the report names it as the reader sees it
DIED_IN = r"(cell In \[4\]|the cell after In \[3\])"


def notebook(folder: Path, failing_cell: str) -> Path:
    """A batch notebook (parameters cell, a cell that works, the failing cell, one after it)."""
    (folder / "prompts").mkdir(exist_ok=True)  # the project root the kernel starts in
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A batch that fails"),
                nbformat.v4.new_code_cell("repeats = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print('first cell ran')"),
                nbformat.v4.new_code_cell(failing_cell),
                nbformat.v4.new_code_cell("print('never runs')")]
    path = folder / "batch.ipynb"
    nbformat.write(nb, path)
    return path


def run_failing(tmp_path: Path, cell: str) -> tuple[NotebookError, Path]:
    with pytest.raises(NotebookError) as info:
        run_notebook(notebook(tmp_path, cell), {"repeats": 2}, output_dir=tmp_path / "out",
                     log=tmp_path / "log.db", cwd=tmp_path)
    return info.value, tmp_path / "out" / "batch.html"


def banner_on_first_screen(html: Path) -> str:
    """The failure banner's text if chromium shows it within the first 1280x800 screen, else ''."""
    with browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 800})
        try:
            offline(page)
            page.goto(html.resolve().as_uri())
            page.wait_for_load_state("load")
            banner = page.locator(".promptlab-failure").first
            if not banner.is_visible():
                return ""
            box = banner.bounding_box()
            return banner.inner_text() if box and box["y"] + box["height"] <= 800 else ""
        finally:
            page.close()


def test_a_cell_that_raises_is_named_with_its_exception_and_the_notebook_keeps_a_banner(tmp_path):
    err, html = run_failing(tmp_path, RAISES)
    assert "failed: cell In [4] (`rows = [1, 2, 3]`): ZeroDivisionError: division by zero" in str(err)
    assert "\n" not in str(err) and str(html) in str(err)
    nb = nbformat.read(tmp_path / "out" / "batch.ipynb", as_version=4)
    assert "promptlab-failure" in nb.cells[0].source and "ZeroDivisionError" in nb.cells[0].source
    assert nb.metadata["promptlab"]["error"].startswith("cell In [4]")


def test_a_dead_kernel_is_named_as_such_with_the_cell_it_died_in(tmp_path):
    err, html = run_failing(tmp_path, DIES)
    assert re.search(rf"failed: {DIED_IN} \(`import os`\): the kernel died", str(err))
    assert html.is_file()


def test_run_notebook_cli_prints_why_in_one_line_without_a_traceback(tmp_path):
    path = notebook(tmp_path, DIES)
    proc = subprocess.run([sys.executable, "-m", "lab", "--log", str(tmp_path / "log.db"), "run-notebook", str(path), "-p", "repeats", "2",
                           "--output-dir", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert re.search(rf"batch.ipynb failed: {DIED_IN} \(`import os`\): the kernel died", line)
    assert "Traceback" not in proc.stderr


@pytest.mark.browser
@pytest.mark.parametrize("cell, why", [(RAISES, "ZeroDivisionError: division by zero"), (DIES, "the kernel died")])
def test_the_html_of_a_failed_run_says_so_on_its_first_screen_in_chromium(tmp_path, cell, why):
    _, html = run_failing(tmp_path, cell)
    text = banner_on_first_screen(html)
    assert "This run failed" in text and re.search(DIED_IN, text) and why in text
