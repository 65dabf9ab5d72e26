"""The workbench in a real JupyterLab, driven in Debian's chromium: open the workbench notebook,
run it, click Run and Retry, and see a second sample appear next to the first."""

from __future__ import annotations

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

import pytest

from tests.chromium import browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a loopback port with a token, serving a copy of the workbench notebook."""
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "workbench.ipynb", tmp_path / "notebooks" / "workbench.ipynb")
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
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
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
    ARTIFACTS.mkdir(exist_ok=True)
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{base}/lab/tree/notebooks/workbench.ipynb?token={token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
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
