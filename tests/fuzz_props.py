"""The fuzzer's properties: arbitrary text where the lab takes text in, and what must still hold.

Shared by ``tests/test_fuzz.py`` (a bounded number of examples in every test run) and
``bench/fuzz.py`` (many more, with counts in bench/results.md). Each property runs the path a user
takes (the command line, or ``lab.experiment(...).run()``) and checks: the run ends normally (a
refusal is one ``LabError``, exit status 2, no traceback), every finished call is in the log exactly
once (or set aside in the ``.rejected`` file with a reason), and the lab opens the log afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import strategies as st

import lab
from lab.cli import main as cli_main
from lab.text import storable

PROMPT = "task: t\nparams: {temperature: 0, max_tokens: 1000000}\nvariants:\n  a:\n    user: 'Say {{ text }}'\n"
NASTY = ["\ud800", "\udc80", "\udfff", "\x00", "\u202e", "\u200b", "\x1b[2J", "é", "\n", "\r\n", '"', "\\", "{{", "%}"]

#: characters from the whole code space, lone surrogates included, plus the ones that broke the lab before
chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from([c for c in NASTY if len(c) == 1]))
pieces = st.one_of(chars, st.sampled_from(NASTY))
texts = st.one_of(
    st.lists(pieces, max_size=120).map("".join),
    st.builds(lambda t, n: t * n, st.text(chars, min_size=1, max_size=8), st.integers(1000, 200_000)),  # huge
    st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 30_000)),  # deeply nested, as text
)


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def check_model_output(server, text: str) -> None:
    """A server answers ``text``: the run ends normally and the log holds every call once, storably."""
    server.responder = lambda request: text
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "l.db"
        prompt = Path(d) / "p.yaml"
        prompt.write_text(PROMPT)
        model = f"openai-compatible:{server.base_url}#fuzz"
        runs = lab.experiment(prompt, [{"id": f"r{i}", "text": f"in {i}"} for i in range(3)], model=model,
                              log=lab.log(log), provider_options={model: {"max_retries": 0}}).run()
        df = lab.log(log).runs(runs.experiment_id)
        assert len(df) == 3 and df["id"].is_unique
        assert set(df["outcome"]) == {"answered"}, df["error"].tolist()
        sent = json.loads(json.dumps(text))  # what JSON carries: a surrogate pair arrives as one character
        for out in df["output"]:
            assert out.encode("utf-8") is not None and out == storable(sent)[0]
        rc, shown, err = _cli("--log", str(log), "show", runs.experiment_id, "--outputs")
        assert rc == 0 and "Traceback" not in err


def check_raw_body(server, raw: bytes) -> None:
    """A server answers with ``raw`` bytes (invalid UTF-8, say) inside the JSON text: an answer or an
    error row, never a lost call."""
    from tests.loopback._http import Reply

    body = b'{"choices":[{"message":{"role":"assistant","content":"' + raw.replace(b"\\", b"\\\\").replace(
        b'"', b'\\"') + b'"},"finish_reason":"stop"}]}'
    server._answer = lambda request, text, serial: Reply(200, body)
    try:
        check_rows_logged(server)
    finally:
        del server._answer


def check_rows_logged(server) -> None:
    with tempfile.TemporaryDirectory() as d:
        prompt = Path(d) / "p.yaml"
        prompt.write_text(PROMPT)
        model = f"openai-compatible:{server.base_url}#fuzz"
        log = lab.log(Path(d) / "l.db")
        runs = lab.experiment(prompt, [{"id": "r1", "text": "x"}, {"id": "r2", "text": "y"}], model=model,
                              log=log, provider_options={model: {"max_retries": 0}}).run()
        df = lab.log(log.path).runs(runs.experiment_id)
        assert len(df) == 2 and set(df["outcome"]) <= {"answered", "error"}


def check_file(name: str, content: bytes, other: str, other_text: str) -> None:
    """``content`` as a prompt file or input set: the run goes through or is refused in one error."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(content)
        (Path(d) / other).write_text(other_text)
        prompt, inputs = (path, Path(d) / other) if name.startswith("p.") else (Path(d) / other, path)
        rc, out, err = _cli("--log", str(Path(d) / "l.db"), "run", str(prompt), "--inputs", str(inputs),
                            "-m", "scripted:echo", "--progress", "off")
        assert rc in (0, 2), (rc, err)
        assert "Traceback" not in err
        if rc == 2:
            assert err.startswith("error: ")
        lab.log(Path(d) / "l.db").close()


def recovery_blob(tmp: Path, rows: int = 3) -> tuple[Path, bytes]:
    """A log with no runs and the recovery lines of ``rows`` real run rows (made elsewhere)."""
    src = lab.log(tmp / "src.db")
    (tmp / "p.yaml").write_text(PROMPT)
    lab.experiment(tmp / "p.yaml", [{"id": f"r{i}", "text": f"café ü {i}"} for i in range(rows)],
                   model="scripted:echo", log=src, id="rec").run()
    base = tmp / "base.db"
    lab.log(base).close()
    return base, b"".join(runs_as_recovery_lines(src.path))


def runs_as_recovery_lines(db: Path) -> list[bytes]:
    """Every run row of the SQLite log ``db`` as a line of a recovery file (what the writer keeps)."""
    con = sqlite3.connect(db)
    try:
        cur = con.execute("SELECT * FROM runs ORDER BY seq")
        cols = [c[0] for c in cur.description]
        rows = [{c: v for c, v in zip(cols, row) if c != "seq"} for row in cur.fetchall()]
    finally:
        con.close()
    return [json.dumps({"table": "runs", "columns": list(d), "values": list(d.values()), "ignore": False},
                       ensure_ascii=False).encode() + b"\n" for d in rows]


def check_recovery(base: Path, blob: bytes, work: Path) -> None:
    """``blob`` as the recovery file: the log opens, each complete row is in it exactly once, and every
    other non-empty line is in the .rejected file with a reason."""
    for suffix in ("", "-wal", "-shm", ".recovery.jsonl", ".recovery.jsonl.rejected"):
        (work.parent / (work.name + suffix)).unlink(missing_ok=True)
    shutil.copy(base, work)
    work.with_name(work.name + ".recovery.jsonl").write_bytes(blob)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        log = lab.log(work)
        df = log.runs()
        log.close()
    assert "Traceback" not in err.getvalue()
    assert df["id"].is_unique
    rejected_file = work.with_name(work.name + ".recovery.jsonl.rejected")
    rejected = [json.loads(x) for x in rejected_file.read_text().splitlines()] if rejected_file.exists() else []
    assert all(r["reason"] for r in rejected)
    nonblank = [x for x in blob.split(b"\n") if x.strip()]
    assert len(df) + len(rejected) == len(nonblank)
    assert not work.with_name(work.name + ".recovery.jsonl").exists()
