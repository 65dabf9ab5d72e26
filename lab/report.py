"""Result notebooks shared as HTML that opens with no network.

    lab.report.export_html("results/<experiment>/persona_vs_honest.ipynb")

nbconvert drops plotly's own output type, so each figure is turned into HTML first, with plotly.js
embedded once per file (about 5 MB); the template leaves out every script or link to a CDN.
Notebooks are run by :mod:`lab.notebooks`, which writes this copy after each run.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd

from .version import __version__
from .errors import LabError, NotebookError, ParameterError
from .secrets import looks_like_secret, redact
from .names import check_id, path_under
from .store import RunLog, new_id

PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _existing(notebook: str | Path) -> Path:
    path = Path(notebook)
    if not path.is_file():
        raise NotebookError(f"{path}: no such notebook")
    if path.suffix != ".ipynb":
        raise NotebookError(f"{path}: not a notebook (.ipynb)")
    return path


def _why_failed(exc: Exception) -> str:
    """One line: the cell's exception, or "the kernel died", or what else stopped the run."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        text = f"{exc.ename}: {exc.evalue}"
    elif type(exc).__name__ == "DeadKernelError":
        text = "the kernel died (a crash, an out-of-memory kill or os._exit inside the notebook's process)"
    else:
        text = f"{type(exc).__name__}: {exc}"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return redact(first[:500])


def _failed_cell(nb: Any) -> str | None:
    """Which cell stopped the run, as a reader of the notebook finds it: ``cell In [4] (`boom()`)``.
    Papermill marks a cell that raised "failed"; when the kernel dies, the cell that was running is
    the last one papermill started (the rest stay "pending")."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    started = [c for c in code if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    failed = [c for c in started if c.metadata["papermill"].get("status") == "failed"]
    cell = (failed or started or [None])[-1]
    if cell is None:
        return None
    count = cell.get("execution_count")
    before = [c.get("execution_count") for c in code[:code.index(cell)] if c.get("execution_count")]
    # a cell whose kernel died never got its number: name it by the one before, as the reader sees it
    label = (f"cell In [{count}]" if count else f"the cell after In [{before[-1]}]" if before
             else f"code cell {code.index(cell) + 1}")
    line = next((ln.strip() for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    return label + (f" (`{line[:80]}`)" if line else "")


def _add_failure_banner(nb: Any, where: str | None, why: str) -> None:
    """Put a banner at the very top of ``nb`` (and so of its HTML) saying the run failed, where and why,
    so that a shared report of a failed run never reads as a run that produced nothing."""
    import html as _html

    import nbformat

    # papermill's own error cells say less (a bare link); ours replaces them
    nb.cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    text = (f"<b>This run failed</b>{' at ' + _html.escape(where) if where else ''}: {_html.escape(why)}. "
            "Cells after it did not run; what follows is partial.")
    banner = nbformat.v4.new_markdown_cell(
        f'<div class="promptlab-failure" role="alert" style="border:3px solid #d62728;background:#fdecea;'
        f'color:#611a15;padding:12px 16px;font-size:1.15em">{text}</div>',
        metadata={"tags": ["promptlab-failure"]})
    nb.cells.insert(0, banner)


def _redact_notebook(nb: Any) -> None:
    """Mask secrets from the environment in every cell's source and text outputs."""
    for cell in nb.cells:
        cell.source = redact(cell.source)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = redact(out["text"])
            for mime, value in out.get("data", {}).items():
                if isinstance(value, str):
                    out["data"][mime] = redact(value)


def figures_to_html(nb: Any) -> int:
    """Give every plotly output of ``nb`` (in place) an HTML form that renders offline: plotly.js
    is embedded in the first figure and reused by the rest. Returns the number of figures."""
    import plotly.io as pio

    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME not in data:
                continue
            fig = pio.from_json(_json_text(data[PLOTLY_MIME]), skip_invalid=True)
            div = pio.to_html(fig, include_plotlyjs=count == 0, full_html=False,
                              div_id=f"promptlab-figure-{count}", config={"displaylogo": False})
            data["text/html"] = div
            count += 1
    return count


def _json_text(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


# nbconvert's lab template with every block that loads a script from a CDN left out: require.js,
# MathJax, mermaid and the widget renderer. The figures need none of them (plotly.js is embedded
# by figures_to_html), so the report makes no network request at all.
_OFFLINE_TEMPLATE = "promptlab-offline.html.j2"
_OFFLINE_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(notebook: str | Path, html_path: str | Path | None = None) -> Path:
    """Write a self-contained HTML copy of an executed notebook (plotly figures render offline).

    Default destination: next to the notebook, with ``.html``. Secrets from the environment are
    masked. Returns the HTML path.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    path = _existing(notebook)
    nb = copy.deepcopy(nbformat.read(path, as_version=4))
    figures_to_html(nb)
    for cell in nb.cells:  # papermill's own bookkeeping is noise in a shared report
        cell.get("metadata", {}).pop("papermill", None)
    exporter = HTMLExporter(template_name="lab", template_file=_OFFLINE_TEMPLATE,
                            extra_loaders=[jinja2.DictLoader({_OFFLINE_TEMPLATE: _OFFLINE_TEMPLATE_SOURCE})])
    try:
        body, _ = exporter.from_notebook_node(nb)
    except Exception as exc:
        raise NotebookError(f"{path}: HTML export failed: {exc}") from None
    dest = Path(html_path) if html_path is not None else path.with_suffix(".html")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(redact(body), encoding="utf-8")
    return dest


