"""The workbench in a real JupyterLab, driven in Debian's chromium: open the workbench notebook,
run it, click Run and Retry, and see a second sample appear next to the first."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.chromium import browser, offline

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PLOTLY = "application/vnd.plotly.v1+json"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextlib.contextmanager
def _page(width: int, height: int):
    """A chromium page of this size; screenshots go to test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    with browser() as b:
        yield b.new_page(viewport={"width": width, "height": height})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a loopback port with a token, serving a copy of the workbench notebook."""
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "notebooks").mkdir()
    # short answers keep each real-model call to a few seconds on a busy machine
    text = (ROOT / "notebooks" / "workbench.ipynb").read_text().replace("max_tokens = 48", "max_tokens = 12")
    (tmp_path / "notebooks" / "workbench.ipynb").write_text(text)
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / ".runtime"), "PROMPTLAB_LOG": str(tmp_path / "log.db"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         f"--LabApp.workspaces_dir={tmp_path / '.workspaces'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "jupyter.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_workbench_in_jupyterlab_runs_and_retries_and_shows_both_samples(jupyterlab):
    base, token = jupyterlab
    with _page(1400, 1000) as page:
        _run_all_cells(page, base, token, "notebooks/workbench.ipynb", timeout_ms=60_000)
        bench = page.locator(".promptlab-workbench")
        bench.wait_for()
        # the plot under the workbench renders too (plotly's JupyterLab extension)
        page.locator(".js-plotly-plot .main-svg").first.wait_for()
        run = bench.locator("button", has_text=re.compile(r"^\s*Run\s*$"))
        retry = bench.locator("button", has_text=re.compile(r"^\s*Retry\s*$"))
        try:
            run.click()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "workbench-failed.png"), full_page=True)
            (ARTIFACTS / "workbench-failed.html").write_text(bench.inner_html())
            raise
        samples = bench.locator(".promptlab-sample")
        samples.first.wait_for()
        assert samples.count() == 1
        page.wait_for_function("() => !document.querySelector('.promptlab-workbench button[title~=another]')"
                               "?.disabled")
        retry.click()
        samples.nth(1).wait_for()
        assert samples.count() == 2
        freq = bench.locator(".promptlab-frequencies")
        freq.wait_for()
        assert "/2" in freq.inner_text()
        bench.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "workbench-run-retry.png"), full_page=True)
        texts = samples.all_inner_texts()
        assert all("sample" in t for t in texts)


# ---- what a person sees, at the narrowest and widest widths the lab supports -------------------------

WIDTHS = [1280, 1920]
# every text a person reads as a label: widget descriptions, buttons, card titles, the model string
LABELS = (".promptlab-workbench .widget-label, .promptlab-workbench button, .promptlab-workbench "
          ".promptlab-card-label, .promptlab-workbench input[type=text], .promptlab-workbench .p-Collapse-header,"
          " .promptlab-workbench .jp-Collapse-header")
CUT = ("sel => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null"
       " && e.scrollWidth > e.clientWidth + 1).map(e => (e.textContent || e.value || '').trim()"
       " + ' (' + e.scrollWidth + ' > ' + e.clientWidth + ')')")


def _run_all_cells(page, base: str, token: str, notebook: str, *, timeout_ms: int = 120_000) -> None:
    """Open ``notebook`` in JupyterLab, wait for its kernel, and run every cell (as Run > Run All)."""
    page.set_default_timeout(timeout_ms)
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                           " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def _open_workbench(page, base: str, token: str):
    _run_all_cells(page, base, token, "notebooks/workbench.ipynb")
    bench = page.locator(".promptlab-workbench")
    bench.wait_for()
    return bench


# a <select>'s innerText holds every option; a file picker listing prompts/persona_vs_honest_inputs.yaml
# names no sample's variant, so what a person sees of a dropdown is its chosen option only
SEEN = ("el => { const c = el.cloneNode(true); c.querySelectorAll('select').forEach(s => s.replaceWith("
        "document.createTextNode(s.selectedIndex >= 0 ? s.options[s.selectedIndex].text : ''))); "
        "document.body.appendChild(c); const t = c.innerText; c.remove(); return t; }")


def _seen(locator) -> str:
    """The text a person sees in ``locator``: dropdowns show their chosen option, not the whole list."""
    return locator.evaluate(SEEN)


def _idle(page) -> None:
    """Wait until the workbench's call in flight has finished (Run enabled, Cancel disabled again)."""
    page.wait_for_function("() => { const bs = [...document.querySelectorAll('.promptlab-workbench button')];"
                           " const run = bs.find(x => x.textContent.trim() === 'Run');"
                           " const cancel = bs.find(x => x.textContent.trim() === 'Cancel');"
                           " return run && !run.disabled && cancel && cancel.disabled; }")


def _button(bench, text: str):
    return bench.locator("button", has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


@pytest.mark.parametrize("width", WIDTHS)
def test_no_workbench_label_is_cut_and_three_cards_fit_a_row(jupyterlab, width):
    base, token = jupyterlab
    with _page(width, 1100) as page:
        bench = _open_workbench(page, base, token)
        _button(bench, "Run").click()
        bench.locator(".promptlab-sample").first.wait_for()
        _idle(page)
        for _ in range(2):
            _button(bench, "Retry").click()
            _idle(page)
        bench.locator(".promptlab-card").nth(2).wait_for()
        bench.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"workbench-{width}.png"), full_page=True)
        cut = page.evaluate(CUT, LABELS)
        assert cut == [], f"cut labels at {width} px: {cut}"
        tops = page.evaluate("() => [...document.querySelectorAll('.promptlab-card')].map(c =>"
                             " Math.round(c.getBoundingClientRect().top))")
        assert len(tops) == 3 and len(set(tops)) == 1, f"three cards do not fit one row at {width} px: {tops}"
        rating = bench.locator(".promptlab-card").first.locator(".widget-dropdown")
        shown = rating.locator("select").evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        assert "rating" in rating.inner_text() and shown == "score 1-5"


def _run_blind_round(page, bench) -> None:
    """Tick blind, press Run, and wait until both samples of the round are on the page."""
    bench.locator(".widget-checkbox input").first.check()
    _button(bench, "Run").click()
    bench.locator(".promptlab-sample").nth(1).wait_for()
    _idle(page)


def test_blind_context_holds_no_variant_name_until_rated(jupyterlab):
    base, token = jupyterlab
    with _page(1280, 1100) as page:
        bench = _open_workbench(page, base, token)
        _run_blind_round(page, bench)
        bench.get_by_text("whole context of the latest call").click()
        context = bench.locator(".promptlab-blind-context")
        context.wait_for()
        page.screenshot(path=str(ARTIFACTS / "workbench-blind.png"), full_page=True)
        seen = _seen(bench)
        for name in ("persona", "honest", "world-class", "online shop"):
            assert name not in seen, f"the blind workbench shows {name!r}"
        assert {t.strip() for t in bench.locator(".promptlab-card-label").all_inner_texts()} == {"sample A", "sample B"}


def test_a_failed_call_leaves_the_earlier_cards(jupyterlab):
    base, token = jupyterlab
    with _page(1280, 1100) as page:
        bench = _open_workbench(page, base, token)
        _button(bench, "Run").click()
        bench.locator(".promptlab-sample").first.wait_for()
        _idle(page)
        first = bench.locator(".promptlab-sample").first.inner_text()
        model = bench.locator(".widget-text", has=page.locator("label", has_text=re.compile(r"^model$"))).locator("input")
        model.fill("nope:model")
        _button(bench, "Run").click()
        bench.locator(".promptlab-sample[data-outcome=error]").wait_for()
        _idle(page)
        page.screenshot(path=str(ARTIFACTS / "workbench-failed-call.png"), full_page=True)
        samples = bench.locator(".promptlab-sample")
        assert samples.count() == 2 and samples.first.inner_text() == first
        assert "run failed" in samples.nth(1).inner_text() and "unknown provider" in samples.nth(1).inner_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_opens_with_the_findings_above_the_first_figure_and_no_stderr_boxes(tmp_path, width):
    import lab
    from lab.notebooks import run_notebook
    from tests import scripted  # noqa: F401  (registers the scripted provider for this process)

    log = tmp_path / "log.db"
    exp = lab.experiment(str(ROOT / "prompts" / "sentiment.yaml"), inputs=str(ROOT / "prompts" / "sentiment_inputs.yaml"),
                         model="scripted:seeded", repeats=2, seed=1, log=log, progress="quiet")
    exp.run()
    result = run_notebook(ROOT / "notebooks" / "compare.ipynb", {"experiments": [exp.id]}, log=log,
                          output_dir=tmp_path / "out", cwd=ROOT, timeout_s=300)
    with _page(width, 1100) as page:
        offline(page)
        page.goto(result.html.resolve().as_uri())
        page.wait_for_function("() => document.querySelector('.js-plotly-plot .main-svg')")
        page.screenshot(path=str(ARTIFACTS / f"report-compare-{width}.png"), full_page=True)
        findings = page.locator(".promptlab-findings").first
        text = findings.inner_text()
        assert "persona" in text and "honest" in text and "n (inputs x repeats)" in text and "8 x 2" in text
        order = page.evaluate("() => [document.querySelector('.promptlab-findings').getBoundingClientRect().top,"
                              " document.querySelector('.js-plotly-plot').getBoundingClientRect().top]")
        assert order[0] < order[1], f"findings at {order[0]} px, first figure at {order[1]} px"
        assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0


def test_compare_view_hides_variant_names_in_the_figure_and_cuts_no_label(jupyterlab, tmp_path):
    import nbformat

    import lab
    from tests import scripted  # noqa: F401  (registers the scripted provider for this process)

    base, token = jupyterlab
    lab.experiment(str(ROOT / "prompts" / "sentiment.yaml"), inputs=str(ROOT / "prompts" / "sentiment_inputs.yaml"),
                   model="scripted:seeded", repeats=2, seed=1, log=tmp_path / "log.db", progress="off").run()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import lab\nlab.compare_view()")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "view.ipynb")
    with _page(1280, 1100) as page:
        _run_all_cells(page, base, token, "notebooks/view.ipynb")
        view = page.locator(".promptlab-compare")
        view.wait_for()
        view.locator(".js-plotly-plot .main-svg").first.wait_for()
        listed = view.locator("select").first.inner_text().replace("\xa0", " ")
        assert listed.startswith("sentiment · ") and "32 calls" in listed  # task, time and size, not raw ids
        view.locator(".widget-checkbox input").first.check()
        page.wait_for_function("() => !document.querySelector('.promptlab-compare').innerText.includes('persona')"
                               " && document.querySelector('.promptlab-compare .js-plotly-plot .main-svg')")
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "compare-view-blind.png"), full_page=True)
        svg = view.locator(".js-plotly-plot").first.evaluate("d => d.textContent")
        assert "variant A" in svg and "persona" not in svg and "honest" not in svg
        assert "persona" not in view.inner_text() and "honest" not in view.inner_text()
        cut = page.evaluate(CUT, ".promptlab-compare .widget-label, .promptlab-compare button")
        assert cut == [], f"cut labels: {cut}"
        top = page.evaluate("() => [document.querySelector('.promptlab-compare .promptlab-findings')"
                            ".getBoundingClientRect().top, document.querySelector('.promptlab-compare"
                            " .js-plotly-plot').getBoundingClientRect().top]")
        assert top[0] < top[1]


# ---- shared reports answer first -----------------------------------------------------------------------

REPORTS = ["persona_vs_honest.ipynb", "ablation.ipynb", "self_critique.ipynb"]
FIRST_SCREEN = {"width": 1280, "height": 800}
STATIC = ("image/png", "image/svg+xml")
RAW = re.compile(r"\bnan\b|\bNaN\b|\de-\d\d\b|\\n|\{'")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The three long reports run on the local model with tiny inputs (as tests/test_notebooks.py does)."""
    from lab.notebooks import notebook_parameters, run_notebook
    from tests.test_notebooks import OVERRIDES, SMALL, TINY_ARITHMETIC, TINY_FACTS, TINY_INPUTS

    base = tmp_path_factory.mktemp("reports")
    for file, text in (("tiny.yaml", TINY_INPUTS), ("arithmetic.yaml", TINY_ARITHMETIC), ("facts.yaml", TINY_FACTS)):
        (base / file).write_text(text)
    out = {}
    for name in REPORTS:
        takes = notebook_parameters(ROOT / "notebooks" / name)
        wanted = {**SMALL, "inputs": "tiny.yaml", **OVERRIDES.get(name, {})}
        wanted["inputs"] = str(base / wanted["inputs"])
        out[name] = run_notebook(ROOT / "notebooks" / name, {k: v for k, v in wanted.items() if k in takes},
                                 output_dir=base / name.removesuffix(".ipynb"), log=base / "log.db", timeout_s=600)
    return out


@pytest.mark.parametrize("name", REPORTS)
def test_the_report_answers_on_its_first_screen_with_code_hidden_and_no_raw_values(reports, name):
    run = reports[name]
    stem = name.removesuffix(".ipynb")
    with _page(**FIRST_SCREEN) as page:
        offline(page)
        page.goto(run.html.resolve().as_uri())
        page.wait_for_function("() => document.querySelector('.js-plotly-plot .main-svg')")
        page.screenshot(path=str(ARTIFACTS / f"report-{stem}-first-screen.png"))
        page.screenshot(path=str(ARTIFACTS / f"report-{stem}-full.png"), full_page=True)
        question = page.locator("h1").first.bounding_box()
        headline = page.locator(".promptlab-headline").first
        box = headline.bounding_box()
        assert headline.inner_text().strip() and question["y"] < box["y"]
        assert box["y"] + box["height"] <= FIRST_SCREEN["height"], f"the headline ends at {box['y'] + box['height']} px"
        figure = page.locator(".js-plotly-plot").first.bounding_box()
        assert figure["y"] < FIRST_SCREEN["height"], f"the headline figure starts at {figure['y']} px"
        shown = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea')].filter(e => e.offsetParent !== null).length"
        assert page.evaluate(shown) == 0, "code is visible by default"
        cells = page.evaluate("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                              ".filter(e => !e.querySelector('.js-plotly-plot')).map(e => e.innerText)")
        raw = [t[:200] for t in cells if RAW.search(t)]
        assert raw == [], f"raw values in {name}: {raw}"
        page.locator(".promptlab-code-toggle").click()
        assert page.evaluate(shown) > 0, "the toggle does not show the code"
    nb = nbformat.read(run.notebook, as_version=4)
    figures = [o["data"] for c in nb.cells for o in c.get("outputs", []) if PLOTLY in o.get("data", {})]
    assert figures and all(any(m in d for m in STATIC) for d in figures), "a plotly output has no static image"


# ---- the workbench shows grades, blind stays blind, the grid filters ------------------------------------

KINDS = {"correct", "wrong", "escaped where it should", "over-abstained", "answered where it should", "ungraded"}


def test_a_workbench_card_shows_its_grade_and_why(jupyterlab):
    base, token = jupyterlab
    with _page(1280, 1100) as page:
        bench = _open_workbench(page, base, token)
        _button(bench, "Run").click()
        grade = bench.locator(".promptlab-card .promptlab-grade").first
        grade.wait_for()
        _idle(page)
        bench.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "workbench-grade.png"), full_page=True)
        badge = grade.locator("span").first.inner_text().strip()
        assert badge in KINDS, badge
        assert grade.locator(".promptlab-why").inner_text().strip()  # and why
        card = bench.locator(".promptlab-card").first.inner_text()
        assert "sentiment.yaml" in card and "version" in card and "I love this kettle" in card


def test_a_blind_round_reveals_nothing_before_the_last_rating(jupyterlab):
    base, token = jupyterlab
    with _page(1280, 1100) as page:
        bench = _open_workbench(page, base, token)
        _run_blind_round(page, bench)
        cards = bench.locator(".promptlab-card")

        def rate(i: int, score: str) -> None:
            cards.nth(i).locator("select").select_option(label=score)
            cards.nth(i).locator("button", has_text="Rate").click()
            page.wait_for_function(f"() => document.querySelectorAll('.promptlab-card')[{i}].innerText.includes('rated')")

        def nothing_tells() -> None:
            seen, on_cards = _seen(bench), " ".join(cards.all_inner_texts())
            for word in ("persona", "honest"):
                assert word not in seen, f"the blind round shows {word!r}"
            for word in ("token", "version", " ms"):  # 43 vs 5 tokens would give a persona away
                assert word not in on_cards, f"a blind card shows {word!r}"

        nothing_tells()
        rate(0, "2")
        nothing_tells()
        page.screenshot(path=str(ARTIFACTS / "workbench-blind-one-rated.png"), full_page=True)
        rate(1, "4")
        nothing_tells()  # every sample rated: still nothing until Reveal
        _button(bench, "Reveal").click()
        bench.locator(".promptlab-reveal").wait_for()
        page.screenshot(path=str(ARTIFACTS / "workbench-blind-revealed.png"), full_page=True)
        shown = bench.locator(".promptlab-reveal").inner_text()
        assert "persona" in shown and "honest" in shown and "n = 1" in shown


def test_the_input_set_grid_filters_to_failures(jupyterlab):
    base, token = jupyterlab
    with _page(1280, 1100) as page:
        bench = _open_workbench(page, base, token)
        _button(bench, "Run input set").click()
        grid = bench.locator(".promptlab-grid")
        grid.wait_for(timeout=300_000)
        _idle(page)
        rows = grid.locator("tbody tr")
        assert rows.count() == 8
        label = grid.locator("label", has_text="failures").inner_text()
        failures = int(re.search(r"failures \((\d+)\)", label).group(1))
        grid.locator("input[value=failures]").check()
        page.wait_for_timeout(200)
        visible = grid.locator("tbody tr:visible")
        assert visible.count() == failures
        assert all(set(c.split()) & {"failures"} for c in visible.evaluate_all("rs => rs.map(r => r.className)"))
        grid.locator("tbody tr:visible td.cell details summary").first.click() if failures else None
        grid.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "workbench-grid-failures.png"), full_page=True)
