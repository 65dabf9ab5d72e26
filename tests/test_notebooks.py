"""Every notebook in notebooks/ runs headless with papermill on the local model, records its
parameters and experiment id, and its HTML copy really draws its plotly figures in chromium with
the network cut off. Plus the checks that refuse bad parameters before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import lab
from lab.errors import NotebookError
from lab.notebooks import run_grid, run_notebook
from lab.report import export_html, figures_to_html
from tests.chromium import browser, rendered_figures

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PLOTLY = "application/vnd.plotly.v1+json"
# compare.ipynb reads the log the others wrote, so it runs last
ORDER = ["workbench.ipynb", "persona_vs_honest.ipynb", "escape_hatch.ipynb", "retry_spread.ipynb",
         "self_critique.ipynb", "ablation.ipynb", "confidence.ipynb", "iteration.ipynb", "compare.ipynb"]
TINY_INPUTS = """
- id: love-it
  text: I love this kettle. It boils fast and looks great.
  expected: positive
- id: sarcasm
  tags: [edge]
  text: Oh great, another charger that dies after two days.
  expected: negative
- id: recipe
  tags: [edge, unanswerable]
  text: Preheat the oven to 200C and grease a tin.
  expected: UNSURE
"""
SMALL = {"repeats": 2, "max_tokens": 16, "rounds": 1}
TINY_ARITHMETIC = """
- id: apples
  problem: Tom has 3 apples and buys 4 more. How many apples does he have now?
  expected: 7
- id: pencils
  tags: [edge]
  problem: A box holds 12 pencils. How many pencils are in 5 boxes?
  expected: 60
"""
TINY_FACTS = """
- id: capital-france
  question: What is the capital of France?
  expected: Paris
- id: unknown-person
  tags: [unanswerable]
  question: What is the middle name of Harold Quenby, the baker from Little Ashcombe?
  expected: UNSURE
"""
# self-critique makes up to two more calls per answer with longer contexts: one sample, one round
OVERRIDES = {"self_critique.ipynb": {"repeats": 1, "inputs": "arithmetic.yaml"},
             "ablation.ipynb": {"repeats": 1, "inputs": "facts.yaml"},
             "confidence.ipynb": {"repeats": 1, "inputs": "facts.yaml"}}


def test_every_notebook_is_listed_here_and_committed_clean():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(ORDER)
    for name in ORDER:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert nb.metadata.kernelspec.name == "python3"
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), name


def test_a_parameter_that_looks_like_a_secret_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(lab.ParameterError, match="looks like a secret"):
        run_notebook(NOTEBOOKS / "persona_vs_honest.ipynb", {"model": "sk-ant-api03-abcdefghijklmnop"},
                     output_dir=tmp_path)
    with pytest.raises(lab.ParameterError, match="looks like a secret"):
        run_grid(NOTEBOOKS / "persona_vs_honest.ipynb", {"api_key": ["x", "y"]}, output_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_parameter_the_notebook_lacks_is_refused_with_the_ones_it_takes(tmp_path):
    with pytest.raises(lab.ParameterError, match=r"no parameter\(s\) \['repeat'\]; the notebook takes"):
        run_notebook(NOTEBOOKS / "persona_vs_honest.ipynb", {"repeat": 3}, output_dir=tmp_path)
    with pytest.raises(NotebookError, match="no such notebook"):
        run_notebook(tmp_path / "missing.ipynb")


def test_html_export_embeds_plotly_once_and_turns_each_figure_into_html(tmp_path):
    import plotly.graph_objects as go

    nb = nbformat.v4.new_notebook()
    for i in range(2):
        fig = go.Figure(go.Bar(x=["a", "b"], y=[1, i]), layout={"title": f"figure {i}"})
        out = nbformat.v4.new_output("display_data", data={PLOTLY: json.loads(fig.to_json()), "text/plain": "fig"})
        nb.cells.append(nbformat.v4.new_code_cell("fig", outputs=[out]))
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert figures_to_html(nbformat.read(path, as_version=4)) == 2
    html = export_html(path).read_text()
    assert html.count("promptlab-figure-") >= 2
    assert html.count("plotly.js v") == 1  # the library's banner: embedded once per file
    assert '<script src="https://cdn.plot.ly' not in html


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run every notebook once (module-wide: a kernel start and a model load per notebook)."""
    base = tmp_path_factory.mktemp("notebooks")
    inputs = base / "tiny.yaml"
    inputs.write_text(TINY_INPUTS)
    (base / "arithmetic.yaml").write_text(TINY_ARITHMETIC)
    (base / "facts.yaml").write_text(TINY_FACTS)
    log_path = base / "log.db"
    results = {}
    for name in ORDER:
        takes = lab.notebooks.notebook_parameters(NOTEBOOKS / name)
        wanted = {**SMALL, "inputs": str(inputs), **OVERRIDES.get(name, {})}
        wanted["inputs"] = str(base / Path(wanted["inputs"]).name)
        params = {k: v for k, v in wanted.items() if k in takes}
        results[name] = run_notebook(NOTEBOOKS / name, params, output_dir=base / name.removesuffix(".ipynb"),
                                     log=log_path, timeout_s=300)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_headless_and_records_its_parameters_and_experiment_id(executed, name):
    run = executed[name]
    nb = nbformat.read(run.notebook, as_version=4)
    meta = nb.metadata["promptlab"]
    assert meta["experiment_id"] == run.experiment_id and meta["error"] is None
    assert nb.metadata["papermill"]["parameters"].get("experiment_id", run.experiment_id) == run.experiment_id
    if run.parameters:
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    text = json.dumps(nb)
    assert "0%|" not in text  # no frozen progress bar in the saved notebook
    # progress is one plain stdout line: stderr is drawn as a pink box that reads like an error
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    events = lab.log(run.log_path).events(run.experiment_id)
    assert {"notebook_started", "notebook_finished"} <= set(events["kind"])
    started = events[events["kind"] == "notebook_started"].iloc[0]["detail"]
    assert started["parameters"] == run.parameters
    if name not in ("workbench.ipynb", "compare.ipynb"):
        runs = run.runs()
        assert len(runs) > 0 and set(runs["experiment_id"]) == {run.experiment_id}
        assert set(runs["input_id"]) <= {"love-it", "sarcasm", "recipe", "apples", "pencils",
                                           "capital-france", "unknown-person"}
        assert set(runs[runs["role"] == "answer"]["params"].map(lambda p: p["max_tokens"])) == {16}


@pytest.mark.slow
def test_every_html_export_draws_its_figures_in_chromium_offline(executed):
    with browser() as b:
        for name, run in executed.items():
            nb = nbformat.read(run.notebook, as_version=4)
            expected = [o["data"][PLOTLY]["layout"]["title"]["text"] for c in nb.cells for o in c.get("outputs", [])
                        if PLOTLY in o.get("data", {})]
            assert expected, f"{name} shows no figure"
            drawn = rendered_figures(b, run.html)
            assert drawn == expected, name


@pytest.mark.slow
def test_every_executed_notebook_carries_a_static_image_beside_each_figure(executed):
    """GitHub, nbviewer and editors without the plotly renderer show the PNG."""
    for name, run in executed.items():
        nb = nbformat.read(run.notebook, as_version=4)
        figures = [o["data"] for c in nb.cells for o in c.get("outputs", []) if PLOTLY in o.get("data", {})]
        assert all("image/png" in d or "image/svg+xml" in d for d in figures), name


@pytest.mark.slow
def test_run_notebook_cli_prints_the_summary_the_findings_and_where_the_log_and_html_are(tmp_path):
    inputs = tmp_path / "tiny.yaml"
    inputs.write_text(TINY_INPUTS.split("- id: sarcasm")[0])
    log_path = tmp_path / "cli.db"
    proc = subprocess.run(
        [sys.executable, "-m", "lab", "--log", str(log_path), "run-notebook", "notebooks/persona_vs_honest.ipynb",
         "-p", "model", "local:smollm2", "-p", "inputs", str(inputs), "-p", "repeats", "1", "-p", "max_tokens", "8",
         "--output-dir", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for col in ("n", "answered", "escaped", "errors", "mean_latency_ms"):
        assert col in out
    assert "persona" in out and "honest" in out
    assert out.index("mean_latency_ms") < out.index("Findings for ") < out.index("Log:")  # the verdict in words
    assert f"Log:      {log_path}" in out
    assert (tmp_path / "out" / "persona_vs_honest.html").is_file()


@pytest.mark.slow
def test_a_grid_runs_each_parameter_set_in_turn_with_one_summary(tmp_path):
    inputs = tmp_path / "tiny.yaml"
    inputs.write_text(TINY_INPUTS.split("- id: sarcasm")[0])
    grid = run_grid(NOTEBOOKS / "persona_vs_honest.ipynb", {"repeats": [1, 2]},
                    base={"inputs": str(inputs), "max_tokens": 8}, html=False, log=tmp_path / "g.db")
    table = grid.summary()
    assert list(table["repeats"]) == [1, 2] and list(table["status"]) == ["ok", "ok"]
    assert list(table["calls"]) == [2, 4]
    assert table["experiment_id"].nunique() == 2


def test_run_notebook_cli_refuses_a_secret_without_echoing_it():
    key = "sk-ant-api03-" + "x" * 24
    proc = subprocess.run([sys.executable, "-m", "lab", "run-notebook", "notebooks/persona_vs_honest.ipynb",
                           "-p", "token", key], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "looks like a secret" in proc.stderr
    assert key not in proc.stdout + proc.stderr


def test_readable_tables_show_percentages_intervals_and_no_raw_values():
    import math

    import pandas as pd

    from lab.tables import readable

    raw = pd.DataFrame({"difference": [5.551115e-17, 0.25], "low": [-0.85, 0.1], "high": [0.85, math.nan],
                        "pass_rate": [0.5, math.nan], "pass_low": [0.1, math.nan], "pass_high": [0.9, math.nan],
                        "passed": [1.0, 0.0], "p_value": [0.5, 0.00001], "mean_latency_ms": [1234.5, math.nan],
                        "detail": [{"note": "a\nb"}, None], "tags": [["edge", "normal"], []]}, index=["all", "edge"])
    shown = readable(raw)
    text = shown.to_html() + shown.to_string()
    assert shown.loc["all", "difference (interval)"] == "+0 pts (-85 to +85 pts)"
    assert shown.loc["all", "pass rate (interval)"] == "50% (10% to 90%)"
    assert list(shown["passed"]) == ["pass", "fail"] and shown.loc["edge", "p value"] == "<0.001"
    assert shown.loc["all", "mean latency ms"] == "1,234\u00a0ms" and shown.loc["all", "tags"] == "edge, normal"
    for bad in ("nan", "NaN", "e-17", "{'", "\\n", "None"):
        assert bad not in text, bad
    assert "..." not in readable(pd.DataFrame({"output": ["x" * 200]}))._repr_html_()  # shown whole


def test_the_results_index_lists_each_report_with_its_question_headline_model_n_and_date(tmp_path):
    from lab.report import answer, write_index

    for i, headline in enumerate(["honest beats persona on pass rate.", "No detectable difference."]):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# Question {i}?\n\nWhy we ask."),
                                             nbformat.v4.new_code_cell("answer", outputs=[nbformat.v4.new_output(
                                                 "display_data", data={"text/html": answer(headline)._repr_html_()})])])
        nb.metadata["promptlab"] = {"experiment_id": f"e{i}", "parameters": {"model": "local:smollm2"},
                                    "executed_at": f"2026-12-0{i + 1}T10:00:00+00:00", "calls": 48, "inputs": 8}
        (tmp_path / f"e{i}").mkdir()
        nbformat.write(nb, tmp_path / f"e{i}" / "report.ipynb")
    page = write_index(tmp_path).read_text()
    assert page.index("Question 1?") < page.index("Question 0?")  # newest first
    for text in ("honest beats persona on pass rate.", "local:smollm2", "8 inputs, 48 calls", "2026-12-01 10:00",
                 'href="e0/report.html"'):
        assert text in page
    assert "http" not in page  # nothing to fetch: it opens offline


def test_a_static_image_sits_beside_each_plotly_figure_of_an_executed_notebook(tmp_path):
    import base64

    import plotly.graph_objects as go

    from lab.report import chromium_path, static_images

    if chromium_path() is None:
        pytest.skip("no chromium to draw the images")
    nb = nbformat.v4.new_notebook()
    for i in range(2):
        fig = go.Figure(go.Bar(x=["a", "b"], y=[1, i]), layout={"title": f"figure {i}"})
        out = nbformat.v4.new_output("display_data", data={PLOTLY: json.loads(fig.to_json()), "text/plain": "fig"})
        nb.cells.append(nbformat.v4.new_code_cell("fig", outputs=[out]))
    assert static_images(nb) == 2
    for cell in nb.cells:
        png = base64.b64decode(cell.outputs[0]["data"]["image/png"])
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert static_images(nb) == 0  # only where one is missing


@pytest.mark.slow
def test_a_blind_compare_report_never_names_the_variants(tmp_path):
    import re

    from tests import scripted  # noqa: F401  (registers the scripted provider for this process)

    log = tmp_path / "log.db"
    exp = lab.experiment(str(ROOT / "prompts" / "sentiment.yaml"), inputs=str(ROOT / "prompts" / "sentiment_inputs.yaml"),
                         model="scripted:seeded", repeats=2, seed=1, log=log, progress="quiet")
    lab.grade(exp.run(), lab.graders.default_grader(), log=lab.log(log))
    run = run_notebook(NOTEBOOKS / "compare.ipynb", {"experiments": [exp.id], "blind": True}, log=log,
                       output_dir=tmp_path / "out", cwd=ROOT, timeout_s=300)
    page = run.html.read_text()
    nb = json.dumps(nbformat.read(run.notebook, as_version=4))
    for text in (page, nb):
        assert not re.search(r"\b(persona|honest)\b", text)
        assert "variant A" in text and "variant B" in text
