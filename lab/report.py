"""Result notebooks shared as HTML that opens with no network.

    lab.report.export_html("results/<experiment>/persona_vs_honest.ipynb")

nbconvert drops plotly's own output type, so each figure is turned into HTML first, with plotly.js
embedded once per file (about 5 MB); the template leaves out every script or link to a CDN.
Notebooks are run by :mod:`lab.notebooks`, which writes this copy after each run.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import NotebookError, ParameterError
from .secrets import redact

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
# MathJax, mermaid and the widget renderer; printed lines (progress, plans) are marked so that the
# report can keep them with the hidden code. The figures need none of them (plotly.js is embedded
# by figures_to_html), so the report makes no network request at all.
_OFFLINE_TEMPLATE = "promptlab-offline.html.j2"
_OFFLINE_TEMPLATE_SOURCE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block stream_stdout -%}
<div class="jp-RenderedText jp-OutputArea-output promptlab-stdout" data-mime-type="text/plain">
<pre>
{{- output.text | ansi2html -}}
</pre>
</div>
{%- endblock stream_stdout %}
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
    _widgets_to_notes(nb)
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
    dest.write_text(redact(_code_hidden(body)), encoding="utf-8")
    return dest


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_WIDGET_NOTE = ("<p style='color:#555'><i>An interactive view (widgets) was here: open the notebook in "
                "JupyterLab to use it.</i></p>")

# code, prompts and empty cells are hidden until the reader asks for them; tables get room to breathe
_REPORT_HEAD = """<style id="promptlab-report">
body.promptlab-code-hidden .jp-CodeCell .jp-Cell-inputWrapper, body.promptlab-code-hidden .jp-InputPrompt,
body.promptlab-code-hidden .jp-OutputPrompt, body.promptlab-code-hidden .jp-OutputArea-prompt { display: none; }
body.promptlab-code-hidden .promptlab-stdout { display: none; }
body.promptlab-code-hidden .jp-CodeCell:not(:has(.jp-OutputArea-output)) { display: none; }
body.promptlab-code-hidden .jp-CodeCell .jp-Cell-outputWrapper { margin-top: 0; }
.promptlab-code-toggle { position: fixed; top: 8px; right: 12px; z-index: 100; font: 13px sans-serif;
  padding: 4px 10px; border: 1px solid #bbb; border-radius: 4px; background: #fff; cursor: pointer; }
.jp-RenderedHTMLCommon table td, .jp-RenderedHTMLCommon table th { padding: 4px 10px; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon p { overflow-wrap: normal;
  word-break: normal; hyphens: manual; }
</style>"""
_TOGGLE = ("<button class=\"promptlab-code-toggle\" type=\"button\" onclick=\"const h = document.body.classList"
           ".toggle('promptlab-code-hidden'); this.textContent = h ? 'Show code' : 'Hide code';\">Show code</button>")


def _code_hidden(body: str) -> str:
    """The report opens with code hidden (one button shows it): a reader sees the question, the
    answer and the figures first; the code stays in the page and in the .ipynb."""
    import re

    body = body.replace("</head>", _REPORT_HEAD + "</head>", 1)
    body, n = re.subn(r'<body class="', '<body class="promptlab-code-hidden ', body, count=1)
    if not n:
        body = re.sub(r"<body\b", '<body class="promptlab-code-hidden"', body, count=1)
    return re.sub(r"(<body\b[^>]*>)", lambda m: m.group(1) + _TOGGLE, body, count=1)


def _widgets_to_notes(nb: Any) -> None:
    """A widget output has nothing to draw in a static page: say so instead of an empty Out[n]."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and not ({"text/html", "image/png", PLOTLY_MIME} & set(data)):
                out["data"] = {"text/html": _WIDGET_NOTE, "text/plain": "(interactive view)"}




# ---- the answer a report opens with --------------------------------------------------------------

ANSWER_STYLE = ("border-left:4px solid #1f77b4;background:#f5f8fc;padding:10px 14px;margin:6px 0 12px 0;"
                "font-size:14px;line-height:1.45;max-width:1100px")


@dataclass(frozen=True)
class Answer:
    """What a report says first: one headline sentence, then the detail (rates with intervals and n,
    caveats). A notebook cell that ends with one shows it as a block of class ``promptlab-findings``
    whose first line (class ``promptlab-headline``) is the headline."""

    headline: str
    detail_html: str = ""
    detail_text: str = ""

    def _repr_html_(self) -> str:
        import html as _html

        return (f"<div class='promptlab-findings' style='{ANSWER_STYLE}'>"
                f"<p class='promptlab-headline' style='font-size:1.2em;font-weight:600;margin:0 0 6px 0'>"
                f"{_html.escape(self.headline)}</p>{self.detail_html}</div>")

    def __str__(self) -> str:
        if self.headline in self.detail_text:  # findings say their headline in their own place
            return self.detail_text
        return self.headline + ("\n" + self.detail_text if self.detail_text else "")

    def __repr__(self) -> str:
        return str(self)


def answer(result: Any) -> Answer:
    """The answer block for ``result``: a :class:`lab.findings.Findings`, a self-critique
    (:class:`lab.techniques.Critique`: did revising help?), an ablation
    (:class:`lab.techniques.Ablation`: its verdict and a compact table of effects), a confidence
    report (how sure against how often right, per variant) or a sentence."""
    from .findings import Findings
    from .techniques.ablation import Ablation
    from .techniques.confidence import ConfidenceReport
    from .techniques.critique import Critique

    if isinstance(result, str):
        return Answer(result)
    if isinstance(result, Findings):
        return _findings_answer(result)
    if isinstance(result, Critique):
        return _critique_answer(result)
    if isinstance(result, Ablation):
        return _ablation_answer(result)
    if isinstance(result, ConfidenceReport):
        return _confidence_answer(result)
    raise ParameterError(f"answer: give findings, a self-critique, an ablation or a sentence, not {type(result).__name__}")


def _findings_answer(f: Any, headline: str | None = None) -> Answer:
    import html as _html

    inner = f._repr_html_()
    # the findings' own bold headline becomes the block's first line; its title line follows, smaller
    inner = inner.replace(f"<p><b>{_html.escape(f.headline)}</b></p>", "", 1)
    return Answer(headline or f.headline, inner, str(f))


def _critique_answer(critique: Any) -> Answer:
    """Did revising help? The first answer against the last revision of each chain, paired on the
    input (:func:`lab.stats.paired_difference`); then the first answers' findings."""
    from .stats import paired_difference

    r = critique.rounds
    r = r[r["passed"].notna()] if "passed" in r else r.iloc[0:0]
    headline = "No graded rounds yet: nothing says whether revising helped."
    if len(r) and r["round"].max() > 0:
        keys = ["variant", "input_id", "repeat"]
        last = r.sort_values("round").groupby(keys).tail(1)
        last = last[last["round"] > 0].assign(stage="after revising")
        first = r[r["round"] == 0].assign(stage="first answer")
        both = pd.concat([first, last], ignore_index=True)
        res = paired_difference(both, "after revising", "first answer", value="passed", variant_col="stage",
                                pair_on=("input_id", "repeat", "variant"))
        row = res.iloc[0]
        if row["pairs"]:
            headline = _revision_sentence(row)
    f = critique.findings()
    detail = _findings_answer(f, headline)
    return Answer(headline, "<details><summary>The first answers, per framing (rates with intervals over inputs, "
                            f"caveats)</summary>{detail.detail_html}</details>", detail.detail_text)


def _revision_sentence(row: Any) -> str:
    from .stats import MIN_INPUTS, interval_ends, plural

    d = 100 * float(row["difference"])
    size = f"{plural(int(row['inputs']), 'input')}, {plural(int(row['pairs']), 'chain')}"
    change = f"pass rate {100 * row['mean_b']:.0f}% -> {100 * row['mean_a']:.0f}% after revising ({d:+.0f} points"
    verdict = str(row["verdict"])
    if verdict.startswith("too few"):  # no interval below the minimum number of inputs: counts, no "nan"
        return f"Too few inputs to tell whether revising helped: {change}; {size}; no interval below {MIN_INPUTS} inputs)."
    lo, hi = interval_ends(100 * float(row["low"]), 100 * float(row["high"]), 0)
    change += f", 95% interval {lo} to {hi}; {size})"
    if verdict == "A better":
        return f"Revising helped: {change}."
    if verdict == "B better":
        return f"Revising hurt: {change}."
    return f"No detectable effect of revising: {change}."


def _ablation_answer(ablation: Any) -> Answer:
    """The parts whose removal moves a rate with an interval that excludes 0, or that none does
    (and, below the minimum number of inputs, that there are too few to tell); then one compact
    table: a row per part, a column per measure, the change with its interval."""
    from .stats import MIN_INPUTS, interval_ends, plural
    from .tables import readable

    eff = ablation.effects(split_by_tag=False)
    n_inputs = int(ablation.runs["input_id"].nunique()) if len(ablation.runs) else 0
    if eff.empty:
        return Answer("Nothing to compare yet: no graded or escape outcomes in this ablation's runs.")
    known = eff[eff["low"].notna() & eff["high"].notna()]
    hits = known[(known["low"] > 0) | (known["high"] < 0)]
    said = [f"removing {r.part} changes {r.measure.replace('_', ' ')} by {100 * r.change:+.0f} points "
            "({} to {})".format(*interval_ends(100 * r.low, 100 * r.high, 0)) for r in hits.itertuples()]
    if said:
        more = f"; and {len(said) - 3} more (table below)" if len(said) > 3 else ""
        headline = f"Over {n_inputs} inputs, {'; '.join(said[:3])}{more}."
    elif n_inputs < MIN_INPUTS:
        headline = (f"Too few inputs to tell which part does the work: {plural(n_inputs, 'input')} (a verdict "
                    f"and an interval need {MIN_INPUTS}).")
    else:
        headline = (f"No part's removal changes any outcome rate beyond the noise over {n_inputs} inputs "
                    "(95% intervals all include 0).")
    cells = readable(eff[["part", "measure", "change", "low", "high"]])
    wide = cells.pivot(index="part", columns="measure", values="change (interval)")
    wide = wide.reindex(list(dict.fromkeys(eff["part"]))).rename(columns=lambda m: str(m).replace("_", " "))
    wide.columns.name = None
    table = wide.to_html(escape=True, border=0)
    return Answer(headline, f"<p>Change in each rate when a part of {ablation.variant} is left out "
                            f"(percentage points, 95% interval over inputs):</p>{table}", headline)


# ---- a static image beside every plotly figure (GitHub, nbviewer, editors without plotly) ---------

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
STATIC_MIME = "image/png"


def chromium_path() -> str | None:
    """The browser that draws static images: ``$PROMPTLAB_CHROMIUM``, else the first of
    chromium / chromium-browser / google-chrome on the PATH (Debian's chromium here; never a
    downloaded one). None when there is none."""
    import shutil

    for name in (os.environ.get("PROMPTLAB_CHROMIUM"), *CHROMIUM_NAMES):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


_IMAGES_PAGE = """<!doctype html><html><head><meta charset="utf-8"><script>{plotly}</script></head><body>
<pre id="promptlab-images">pending</pre><script>
const figs = {figures};
(async () => {{
  const out = [];
  for (const f of figs) {{
    try {{ out.push(await Plotly.toImage({{data: f.data || [], layout: f.layout || {{}}}},
                                          {{format: "png", width: f.width, height: f.height, scale: 1.5}})); }}
    catch (e) {{ out.push("error: " + e); }}
  }}
  document.getElementById("promptlab-images").textContent = JSON.stringify(out);
}})();
</script></body></html>"""


def static_images(nb: Any, *, timeout_s: float = 120) -> int:
    """Put a PNG (``image/png``) beside every plotly output of ``nb`` (in place) that lacks one,
    drawn by plotly.js itself in headless chromium, offline (plotly.js is inlined). JupyterLab
    still shows the live figure; GitHub, nbviewer and plain editors show the image. Returns the
    number of images added; 0 (and the notebook unchanged) when no chromium is found."""
    import base64
    import html as _html
    import json
    import re
    import subprocess
    import tempfile

    from plotly.offline import get_plotlyjs

    outs = [o for c in nb.cells for o in c.get("outputs", [])
            if PLOTLY_MIME in o.get("data", {}) and STATIC_MIME not in o.get("data", {})]
    exe = chromium_path()
    if not outs or exe is None:
        return 0
    figs = []
    for o in outs:
        spec = json.loads(_json_text(o["data"][PLOTLY_MIME]))
        layout = spec.get("layout", {})
        figs.append({"data": spec.get("data", []), "layout": layout,
                     "width": int(layout.get("width") or 900), "height": int(layout.get("height") or 500)})
    page = _IMAGES_PAGE.format(plotly=get_plotlyjs(), figures=json.dumps(figs).replace("</", "<\\/"))
    with tempfile.TemporaryDirectory(prefix="promptlab-images-") as tmp:
        src = Path(tmp) / "figures.html"
        src.write_text(page, encoding="utf-8")
        try:
            proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                   "--disable-background-networking", "--disable-component-update",
                                   f"--user-data-dir={tmp}/profile", "--virtual-time-budget=60000",
                                   "--dump-dom", src.as_uri()],
                                  capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            return 0
    found = re.search(r'<pre id="promptlab-images">(.*?)</pre>', proc.stdout, re.S)
    try:
        images = json.loads(_html.unescape(found.group(1))) if found else []
    except ValueError:
        images = []
    added = 0
    for o, url in zip(outs, images):
        if isinstance(url, str) and url.startswith("data:image/png;base64,"):
            data = url.split(",", 1)[1]
            base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))  # a real base64 payload
            o["data"][STATIC_MIME] = data
            added += 1
    return added


# ---- results/index.html: every report, its question and its answer -----------------------------

def report_entry(notebook: str | Path) -> dict[str, Any] | None:
    """What the index says about one executed notebook: question, headline, model, n, date and
    where its HTML is; None for a notebook the lab did not run."""
    import html as _html
    import re

    import nbformat

    path = Path(notebook)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return None
    meta = nb.metadata.get("promptlab")
    if not meta:
        return None
    question = next((ln.lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"
                     for ln in c.source.splitlines() if ln.startswith("# ")), path.stem)
    headline = meta.get("headline") or ""
    if not headline:
        for c in nb.cells:
            for o in c.get("outputs", []):
                found = re.search(r"class='promptlab-headline'[^>]*>(.*?)</p>", str(o.get("data", {}).get("text/html", "")), re.S)
                if found and not headline:
                    headline = _html.unescape(found.group(1))
    if not headline:  # a report made before answer blocks: the findings' second line is their headline
        for c in nb.cells:
            for o in c.get("outputs", []):
                lines = "".join(o.get("data", {}).get("text/plain", "")).splitlines()
                if len(lines) > 1 and lines[0].startswith("Findings for") and not headline:
                    headline = lines[1]
    params = meta.get("parameters") or {}
    model = params.get("model") or _default(nb, "model") or NO_VALUE
    n = (f"{meta['inputs']} inputs, {meta['calls']} calls" if meta.get("calls") is not None and meta.get("inputs")
         else NO_VALUE)
    return {"question": question, "headline": headline or (f"failed: {meta['error']}" if meta.get("error") else NO_VALUE),
            "model": str(model), "n": n, "date": str(meta.get("executed_at", ""))[:16].replace("T", " "),
            "html": path.with_suffix(".html"), "notebook": path, "experiment_id": meta.get("experiment_id", "")}


NO_VALUE = "–"


def _default(nb: Any, name: str) -> str | None:
    import re

    for c in nb.cells:
        if "parameters" in c.get("metadata", {}).get("tags", []):
            found = re.search(rf"^{name}\s*=\s*['\"]([^'\"]+)['\"]", c.source, re.M)
            if found:
                return found.group(1)
    return None


_INDEX_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>promptlab reports</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse;width:100%}}
th,td{{padding:6px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top;overflow-wrap:normal}}
th{{cursor:pointer;background:#f5f5f5;white-space:nowrap}} td.n,td.date{{white-space:nowrap}}</style></head><body>
<h1>promptlab reports</h1><p>{count} report(s), newest first; click a heading to sort.</p>
<table id="promptlab-index"><thead><tr><th>question</th><th>headline</th><th>model</th><th>n</th><th>date (UTC)</th></tr></thead>
<tbody>{rows}</tbody></table>
<script>
document.querySelectorAll('#promptlab-index th').forEach((th, i) => th.addEventListener('click', () => {{
  const body = th.closest('table').tBodies[0], rows = [...body.rows];
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  rows.sort((a, b) => dir * a.cells[i].innerText.localeCompare(b.cells[i].innerText, undefined, {{numeric: true}}));
  rows.forEach(r => body.appendChild(r));
}}));
</script></body></html>"""


def write_index(results: str | Path = "results") -> Path:
    """Write ``results/index.html``: one row per executed notebook under ``results`` (question,
    headline, model, n, date, a link to its HTML), newest first, sortable, with no network."""
    import html as _html

    folder = Path(results)
    entries = [e for p in sorted(folder.glob("**/*.ipynb")) if ".ipynb_checkpoints" not in p.parts
               for e in [report_entry(p)] if e is not None]
    entries.sort(key=lambda e: e["date"], reverse=True)
    esc = _html.escape
    rows = "".join(
        f"<tr><td><a href=\"{esc(e['html'].relative_to(folder).as_posix())}\">{esc(e['question'])}</a></td>"
        f"<td>{esc(e['headline'])}</td><td>{esc(e['model'])}</td><td class=n>{esc(e['n'])}</td>"
        f"<td class=date>{esc(e['date'])}</td></tr>" for e in entries)
    dest = folder / "index.html"
    folder.mkdir(parents=True, exist_ok=True)
    dest.write_text(_INDEX_PAGE.format(count=len(entries), rows=rows), encoding="utf-8")
    return dest


def _confidence_answer(report: Any) -> Answer:
    """How sure the model said it was against how often it was right, per variant, with the Brier
    score and its interval over inputs (:func:`lab.calibration.calibration`)."""
    from .tables import readable

    cal = report.calibration(split_by_tag=False)
    if cal.empty:
        avail = report.availability()
        why = "; ".join(f"{k}: {v}" for k, v in avail["status"].items()) if "status" in avail else "no answers"
        return Answer(f"No stated confidence to read ({why}).")
    parts = []
    for name, r in cal.iterrows():
        gap = r["mean_confidence"] - r["accuracy"]
        lean = "over-confident" if gap > 0.05 else "under-confident" if gap < -0.05 else "about as sure as right"
        interval = (f", interval {r['brier_low']:.2f} to {r['brier_high']:.2f}" if r["brier_low"] == r["brier_low"]
                    else "")
        parts.append(f"{name if not isinstance(name, tuple) else ' / '.join(map(str, name))} says "
                     f"{r['mean_confidence']:.0%} sure and is right {r['accuracy']:.0%} ({lean}; Brier "
                     f"{r['brier']:.2f}{interval}; {int(r['n'])} answers, {int(r['inputs'])} inputs)")
    headline = "How sure against how often right: " + "; ".join(parts) + "."
    note = "<p>Brier score: 0 is perfect, 0.25 is a constant 50%; lower is better.</p>"
    return Answer(headline, note + readable(cal).to_html(escape=True, border=0), headline)
