"""The run log: append cost per row as the log grows, loading one experiment into pandas, drawing the
comparison plots.

Append: ``RunLog.add_run`` (one commit per row, as the runner writes) on a fresh log, timed per window of
rows; baseline: a bare ``sqlite3`` INSERT + commit per row of the same values into a table of the same
shape (same pragmas), measured in the same run. Target <= 0.5 ms/row.
Load: ``log.runs(experiment=...)`` of a 10k-row experiment (two variants x 5k inputs) out of the whole log;
baseline ``pandas.read_sql`` of the same rows. Target <= 1 s.
Plots: ``lab.plots`` comparison figures from that DataFrame. Target <= 2 s.
Reading at scale: ``python -m lab show`` of a 100k-row experiment (a fresh process, as a user runs it;
target <= 0.5 s), ``log.runs(columns=[...])`` against ``pandas.read_sql`` of the same columns,
``import lab`` and ``python -m lab --help`` (fresh processes; target < 0.2 s).

    python bench/bench_log.py                 # 20k rows (reports 10k and 20k)
    python bench/bench_log.py --rows 100000   # the full 100k
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, median, report, tmpdir, verdict

import lab
from lab.store import RunRecord, _dumps, new_id, now

EXP = "bench-10k"


def record(i: int, experiment: str, variant: str, input_no: int, rng: random.Random) -> RunRecord:
    text = f"Review number {input_no}: " + " ".join(rng.choice(["good", "bad", "fine", "broken", "great"])
                                                     for _ in range(30))
    answer = rng.choice(["positive", "negative", "UNSURE"])
    return RunRecord(
        id=new_id(), experiment_id=experiment, model="openai:gpt-4o-mini", outcome="escaped" if answer == "UNSURE"
        else "answered", messages=[{"role": "system", "content": "You sort reviews for a small shop."},
                                   {"role": "user", "content": text}],
        prompt_path="prompts/sentiment.yaml", task="sentiment", variant=variant, prompt_version="0123456789ab",
        input_id=f"in{input_no}", input_tags=["normal"], input_vars={"text": text},
        expected=rng.choice(["positive", "negative"]), params={"temperature": 0.7, "max_tokens": 24, "seed": i},
        seed=i, repeat=0, output=answer, input_tokens=48, output_tokens=1, latency_ms=rng.uniform(200, 900),
        cost_usd=1e-5, started_at=now(), cache_key=new_id() + new_id(), conversation_id=new_id(),
    )


def plan(rows: int) -> list[RunRecord]:
    """``rows`` records: the first 10k are experiment EXP (2 variants x 5k inputs), the rest other experiments."""
    rng = random.Random(1)
    out = []
    for i in range(rows):
        if i < 10_000:
            out.append(record(i, EXP, ("persona", "honest")[i % 2], i // 2, rng))
        else:
            out.append(record(i, f"other-{i // 10_000}", "honest", i, rng))
    return out


def window_times(n: int, marks: list[int], window: int, writers: dict[str, object]) -> dict[str, dict[int, float]]:
    """ms per row over the ``window`` rows ending at each mark (median of five equal slices), for each
    writer; the writers take turns row by row, so both see the same machine load."""
    step = max(1, window // 5)
    spent = {name: 0.0 for name in writers}
    slices: dict[str, dict[int, list[float]]] = {name: {m: [] for m in marks} for name in writers}
    for i in range(n):
        for name, write in writers.items():
            t0 = time.perf_counter()
            write(i)
            spent[name] += time.perf_counter() - t0
        if (i + 1) % step == 0:
            for name in writers:
                for m in marks:
                    if m - window < i + 1 <= m:
                        slices[name][m].append(spent[name] / step * 1000)
                spent[name] = 0.0
    return {name: {m: median(v) for m, v in per.items()} for name, per in slices.items()}


def raw_connection(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    src = lab.log(db.with_name("schema.db"))  # copy the runs table's shape and indexes
    ddl = [r[0] for r in src._db.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'runs' AND sql IS NOT NULL")]
    src.close()
    for stmt in ddl:
        con.execute(stmt)
    return con


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="rows appended (>= 10000)")
    ap.add_argument("--window", type=int, default=1000, help="rows per timing window")
    ap.add_argument("--runs", type=int, default=3, help="repeats of the load and plot timings")
    ap.add_argument("--show-rows", type=int, default=100_000, help="rows of the experiment `show` summarizes")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    n = max(a.rows, 10_000)
    marks = sorted({a.window, 10_000, n} | ({50_000} if n >= 50_000 else set()))
    recs = plan(n)
    with tmpdir() as tmp:
        folder = Path(tmp)
        log = lab.log(folder / "lab.db")
        con = raw_connection(folder / "raw.db")
        rows = [RunLog_row(r) for r in recs]
        cols = list(rows[0])
        values = [[row[c] for c in cols] for row in rows]
        sql = f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        ms = window_times(n, marks, a.window, {"lab": lambda i: log.add_run(recs[i]),
                                                "raw": lambda i: con.execute(sql, values[i])})
        lab_ms, raw_ms = ms["lab"], ms["raw"]

        load_s, raw_load_s, n_loaded = [], [], 0
        import pandas as pd

        for _ in range(a.runs):
            t0 = time.perf_counter()
            df = log.runs(experiment=EXP)
            load_s.append(time.perf_counter() - t0)
            n_loaded = len(df)
            t0 = time.perf_counter()
            pd.read_sql("SELECT * FROM runs WHERE experiment_id = ? ORDER BY seq", con, params=[EXP])
            raw_load_s.append(time.perf_counter() - t0)

        plot_line = plot_timings(df, a.runs)
        con.close()
        log.close()

    lines = [f"Machine: {machine()}.", "",
             f"Append: one `RunLog.add_run` (one commit each, WAL) per row into a fresh log, {n:,} rows; ms per row "
             f"over the {a.window:,} rows ending at each point (median of five slices). Baseline, taking turns row by row with the lab: a bare sqlite3 INSERT + commit per row of "
             "the same values into the same table (same pragmas and indexes).", "",
             "| rows in the log | lab ms/row | bare sqlite3 ms/row | ratio | target <= 0.5 ms/row |",
             "| ---: | ---: | ---: | ---: | --- |"]
    for m in marks:
        lines.append(f"| {m:,} | {lab_ms[m]:.3f} | {raw_ms[m]:.3f} | {lab_ms[m] / raw_ms[m]:.2f}x | "
                     f"{verdict(lab_ms[m] <= 0.5)} |")
    lo, raw_lo = median(load_s), median(raw_load_s)
    lines += ["", f"Load: `log.runs(experiment=...)` of one experiment ({n_loaded:,} rows) out of a {n:,}-row log, "
              f"median of {a.runs}: **{lo:.3f} s** (bare `pandas.read_sql` of the same rows: {raw_lo:.3f} s, "
              f"{lo / raw_lo:.2f}x; the lab also parses the JSON columns). Target <= 1 s: {verdict(lo <= 1.0)}.",
              "", plot_line, "",
              *reading_at_scale(a.runs, a.show_rows),
              f"Reproduce: `python bench/bench_log.py --rows {n}` (`--rows 100000` for the full run)."]
    report("Run log", lines, write=not a.no_write)


def _fresh(args: list[str]) -> float:
    """Wall time of a fresh ``python`` process running ``args`` (interpreter start included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
    return time.perf_counter() - t0


def reading_at_scale(runs: int, rows: int) -> list[str]:
    """`show` of a big experiment, `runs(columns=...)` against read_sql, and start-up times."""
    import pandas as pd

    with tmpdir() as tmp:
        path = Path(tmp) / "big.db"
        log = lab.log(path)
        rng = random.Random(2)
        for i in range(0, rows, 10_000):
            log.add_runs([record(j, "big", ("persona", "honest")[j % 2], j // 2, rng)
                          for j in range(i, min(rows, i + 10_000))])
        show_summary = median([_fresh(["-m", "lab", "--log", str(path), "show", "big", "--summary-only"])
                               for _ in range(runs)])
        show = median([_fresh(["-m", "lab", "--log", str(path), "show", "big"]) for _ in range(runs)])
        summ = median([timed(lambda: log.summary("big"))[0] for _ in range(runs)])
        cols = ["input_id", "variant", "outcome", "output", "input_vars"]
        lab_s = median([timed(lambda: log.runs(experiment="big", columns=cols))[0] for _ in range(runs)])
        con = sqlite3.connect(path)
        raw_s = median([timed(lambda: pd.read_sql(f"SELECT {', '.join(cols)} FROM runs WHERE experiment_id = ? "
                                                  "ORDER BY seq", con, params=["big"]))[0] for _ in range(runs)])
        full_s = median([timed(lambda: log.runs(experiment="big"))[0] for _ in range(runs)])
        raw_full = median([timed(lambda: pd.read_sql("SELECT * FROM runs WHERE experiment_id = ? ORDER BY seq", con,
                                                      params=["big"]))[0] for _ in range(runs)])
        con.close()
        log.close()
    bare = median([_fresh(["-c", "pass"]) for _ in range(runs)])
    imp = median([_fresh(["-c", "import lab"]) for _ in range(runs)])
    helps = median([_fresh(["-m", "lab", "--help"]) for _ in range(runs)])
    return [
        f"Reading at scale ({rows:,}-row experiment, median of {runs}): `python -m lab show --summary-only` in a "
        f"fresh process **{show_summary:.3f} s** (target <= 0.5 s: {verdict(show_summary <= 0.5)}; the SQL summary "
        f"itself, `log.summary()`, {summ * 1000:.0f} ms); plain `python -m lab show` (the summary, then the findings "
        f"block, which reads the columns it needs) **{show:.3f} s** (<= 0.5 s: {verdict(show <= 0.5)}). `log.runs(columns=[5 columns, one JSON])` {lab_s:.3f} s against `pandas.read_sql` of "
        f"the same columns {raw_s:.3f} s ({lab_s / raw_s:.2f}x); every column: {full_s:.3f} s against "
        f"{raw_full:.3f} s ({full_s / raw_full:.2f}x, five JSON columns parsed).",
        "",
        f"Start-up, fresh processes (median of {runs}): `python -c pass` {bare:.3f} s, `import lab` {imp:.3f} s, "
        f"`python -m lab --help` **{helps:.3f} s** (target < 0.2 s: {verdict(helps < 0.2)}).",
        "",
    ]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def RunLog_row(rec: RunRecord) -> list:
    from lab.store import _JSON_COLUMNS, RunLog

    row = RunLog._run_row(rec)
    return {k: (_dumps(v) if k in _JSON_COLUMNS["runs"] else v) for k, v in row.items()}


def plot_timings(df, runs: int) -> str:
    try:
        from lab import plots
    except Exception as exc:  # another engineer's module; the bench must still run without it
        return f"Plots: `lab/plots.py` is not importable here ({type(exc).__name__}: {exc}); not measured."
    figures = {
        "outcome_rates": lambda: plots.outcome_rates(df),
        "paired_difference": lambda: plots.paired_difference(df, "persona", "honest"),
        "cost_latency": lambda: plots.cost_latency(df),
    }
    times: dict[str, float] = {}
    for name, fn in figures.items():
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as exc:
                return f"Plots: `lab.plots.{name}` failed on the benchmark data ({type(exc).__name__}: {exc})."
            samples.append(time.perf_counter() - t0)
        times[name] = median(samples)
    total = sum(times.values())
    each = ", ".join(f"`{k}` {v:.3f} s" for k, v in times.items())
    return (f"Plots: the comparison figures from that DataFrame ({len(df):,} rows), median of {runs}: {each}; "
            f"all three **{total:.3f} s** (figure objects built, not rendered). Target <= 2 s: {verdict(total <= 2)}.")


if __name__ == "__main__":
    main()
