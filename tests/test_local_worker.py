"""The local model runs in a worker process: a crash in llama.cpp is an error row, never a dead
kernel, and Cancel really stops a generation. These kill the real worker (SmolLM2 on llama.cpp)."""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

import lab
from lab.errors import CallCancelled
from lab.providers.local import bundled_model_path, worker_for
from lab.session import Session
from lab.widgets.workbench import TYPED

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

PROMPT = """\
task: count
params: {temperature: 0.7, max_tokens: 48}
variants:
  plain:
    user: "Count from {{ start }} to 200, one number per line."
"""


@pytest.fixture
def prompt(write):
    return write("count.yaml", PROMPT)


@pytest.fixture
def worker():
    w = worker_for(bundled_model_path("smollm2"))
    w.request({"op": "ping"})  # loaded before the test starts timing anything
    return w


def kill_during_call(worker, sig: int, after_replies: int = 1, delay: float = 0.05) -> threading.Thread:
    """Kill the worker with ``sig`` while it answers the call after ``after_replies`` more replies,
    ``delay`` seconds into that call (0: as soon as it is sent; a short answer with the prompt already
    in llama.cpp's cache can be done in under 50 ms)."""
    target = worker.answered + after_replies

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            pid = worker.pid
            if worker.answered >= target and worker.busy and pid:
                time.sleep(delay)
                os.kill(pid, sig)
                return
            time.sleep(0.002)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("sig, name", [(signal.SIGSEGV, "signal 11 (SIGSEGV)"), (signal.SIGKILL, "signal 9 (SIGKILL)")])
def test_a_worker_killed_mid_batch_is_an_error_row_and_the_batch_finishes(prompt, run_log, worker, sig, name):
    starts = worker.starts
    killer = kill_during_call(worker, sig, after_replies=1)
    inputs = [{"id": f"n{i}", "start": i} for i in range(1, 5)]
    df = lab.experiment(prompt, inputs, log=run_log, seed=3).run().df
    killer.join(5)
    assert len(df) == 4
    errors = df[df.outcome == "error"]
    assert len(errors) == 1, df[["input_id", "outcome", "error"]]
    assert errors.error.iloc[0].startswith(f"crash: local model worker died: {name}")
    assert (df[df.outcome != "error"].output.str.len() > 0).all()
    assert worker.starts == starts + 1  # the next call started a fresh worker


def test_the_call_after_a_crash_answers_with_the_same_seeded_output_as_before(prompt, run_log, worker):
    first = lab.experiment(prompt, [{"id": "a", "start": 5}], log=run_log, seed=9).run().df.output.iloc[0]
    os.kill(worker.pid, signal.SIGSEGV)
    again = lab.experiment(prompt, [{"id": "a", "start": 5}], log=run_log, seed=9).run().df
    assert again.outcome.iloc[0] == "answered" and again.output.iloc[0] == first


def test_cancel_really_stops_a_generation_and_the_next_call_starts_a_new_worker(worker, run_log):
    # seeded, and counting to 200 from 1 takes the model about 120 tokens (over a second here): still
    # generating when cancelled 0.2 s after the worker took the call
    s = Session(prompt_file(), model="local:smollm2", params={"max_tokens": 3000, "temperature": 0.2, "seed": 5},
                log=run_log)
    out: dict = {}

    def call() -> None:
        try:
            out["rec"] = s.run({"id": "long", "start": 1})
        except CallCancelled as exc:
            out["cancelled"] = exc

    t = threading.Thread(target=call)
    t.start()
    while not (worker.busy and worker.pid):
        time.sleep(0.01)
    time.sleep(0.2)
    pid = worker.pid
    t0 = time.perf_counter()
    assert s.cancel()
    t.join(10)
    assert "cancelled" in out and time.perf_counter() - t0 < 2
    time.sleep(0.2)
    assert not _alive(pid)  # the generation stopped, not merely abandoned in a thread
    assert run_log.runs(experiment=s.experiment_id).empty
    s.set_params(max_tokens=8)
    assert s.run({"id": "next", "start": 3}).outcome == "answered" and worker.pid != pid


def test_a_workbench_call_whose_worker_dies_shows_the_reason_and_keeps_earlier_samples(worker, run_log):
    wb = lab.workbench(prompt_file(), model="local:smollm2", log=run_log)
    wb.max_tokens.value = 48
    wb.input.value = TYPED
    wb.typed.value = "1"
    wb.run_button.click()
    wb.wait(120)
    assert [c.record.outcome for c in wb.cards] == ["answered"]
    kill_during_call(worker, signal.SIGKILL, after_replies=0, delay=0.0)
    wb.retry_button.click()
    wb.wait(120)
    assert "worker died: signal 9 (SIGKILL)" in wb.status.value
    assert [c.record.outcome for c in wb.cards] == ["answered", "error"] and not wb.retry_button.disabled


def test_the_kernel_survives_its_local_worker_crashing_mid_call(tmp_path):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT),
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PROMPTLAB_PROGRESS": "off"})
    try:
        code = textwrap.dedent(f"""
            import os, signal, threading, time, lab
            from lab.providers.local import bundled_model_path, worker_for
            from tests.test_local_worker import kill_during_call
            w = worker_for(bundled_model_path("smollm2")); w.request({{"op": "ping"}})
            kernel_pid = os.getpid()
            open({str(tmp_path / 'count.yaml')!r}, "w").write({PROMPT!r})
            k = kill_during_call(w, signal.SIGSEGV, after_replies=1)
            df = lab.experiment({str(tmp_path / 'count.yaml')!r}, [{{"id": f"n{{i}}", "start": i}} for i in range(3)],
                                log={str(tmp_path / 'k.db')!r}, seed=1).run().df
            print("OUTCOMES", sorted(df.outcome), "PID", kernel_pid)
        """)
        texts: list[str] = []
        hook = lambda msg: texts.append(msg["content"].get("text", ""))  # noqa: E731
        reply = kc.execute_interactive(code, timeout=300, output_hook=hook)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "OUTCOMES ['answered', 'answered', 'error']" in "".join(texts)
        assert km.is_alive()
        texts.clear()
        reply = kc.execute_interactive(
            "print('AFTER', lab.experiment(%r, [{'id': 'x', 'start': 7}], log=%r).run().df.outcome.tolist(), os.getpid())"
            % (str(tmp_path / "count.yaml"), str(tmp_path / "k.db")), timeout=300, output_hook=hook)
        assert "AFTER ['answered']" in "".join(texts)
        assert km.is_alive()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def prompt_file() -> str:
    path = Path(os.environ["PROMPTLAB_LOG"]).parent / "count.yaml"
    path.write_text(PROMPT)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
