"""Large runs: a real OpenAI-compatible server (llama.cpp) taking parallel requests through the
runner, and an experiment of 100k rows exported to partitioned Parquet that DuckDB reads."""

from __future__ import annotations

import random
import time

import pandas as pd
import pytest

import lab
from lab.store import RunRecord

duckdb = pytest.importorskip("duckdb")

PROMPT = """\
task: capitals
escape_hatch: UNSURE
params: {max_tokens: 8, temperature: 0}
variants:
  terse:
    user: "Capital of {{ country }}? One word."
  honest:
    system: "If you do not know, answer UNSURE."
    user: "I am checking a geography quiz for a class. What is the capital of {{ country }}? One word."
"""
COUNTRIES = ["France", "Japan", "Peru", "Kenya"]

# The comparison table (log.summary) as one DuckDB query over the exported dataset; the
# README's "Large runs" section shows the same query.
COMPARISON_SQL = """
SELECT variant, model,
       count(*)                                   AS n,
       count(*) FILTER (WHERE outcome = 'answered') AS answered,
       count(*) FILTER (WHERE outcome = 'escaped')  AS escaped,
       count(*) FILTER (WHERE outcome = 'error')    AS errors,
       round(avg(latency_ms), 1)                  AS mean_latency_ms,
       sum(output_tokens)                         AS output_tokens,
       sum(cost_usd)                              AS cost_usd
FROM read_parquet('{runs}/**/*.parquet', hive_partitioning = true)
GROUP BY variant, model
ORDER BY variant, model
"""


@pytest.mark.slow
def test_a_llama_cpp_server_takes_parallel_requests_through_the_runner(write, run_log, llama_server_url):
    model = f"openai-compatible:{llama_server_url}#smollm2"
    inputs = [{"id": c.lower(), "country": c} for c in COUNTRIES]
    exp = lab.experiment(write("p.yaml", PROMPT), inputs, model=model, concurrency=4, log=run_log, seed=1)
    t0 = time.perf_counter()
    runs = exp.run()
    wall = time.perf_counter() - t0
    df = runs.df
    assert len(df) == 8 and set(df.outcome) <= {"answered", "escaped"}, df[["outcome", "error"]]
    assert (df.output_tokens > 0).all() and (df.input_tokens > 0).all()
    # several requests were in flight at once: a call started before another one finished
    start = pd.to_datetime(df.started_at)
    end = pd.to_datetime(df.finished_at)
    overlap = max(((start <= t) & (end > t)).sum() for t in start)
    assert overlap >= 2, f"at most {overlap} call(s) in flight"
    print(f"\n8 calls at concurrency 4 on llama_cpp.server: {wall:.2f}s, up to {overlap} in flight")


def _fake_rows(experiment_id: str, n: int) -> list[RunRecord]:
    rng = random.Random(0)
    rows = []
    models = ["anthropic:claude-haiku-4-5", "openai:gpt-4o-mini"]
    for i in range(n):
        variant = ("persona", "honest")[i % 2]
        model = models[(i // 2) % 2]
        outcome = rng.choices(["answered", "escaped", "error"], [0.85, 0.1, 0.05])[0]
        out_tokens = None if outcome == "error" else rng.randint(1, 40)
        rows.append(RunRecord(
            experiment_id=experiment_id, model=model, variant=variant, task="sentiment", prompt_path="p.yaml",
            prompt_version=f"v-{variant}", input_id=f"in-{i // 4 % 5000}", input_tags=["edge"] if i % 7 == 0 else [],
            input_vars={"text": f"review {i}"}, messages=[{"role": "user", "content": f"review {i}"}],
            params={"temperature": 0.7}, repeat=i // 20000, outcome=outcome,
            output=None if outcome == "error" else ("UNSURE" if outcome == "escaped" else "positive"),
            error="rate_limit: too many" if outcome == "error" else None,
            input_tokens=None if outcome == "error" else 20, output_tokens=out_tokens,
            latency_ms=rng.uniform(50, 500), cost_usd=None if outcome == "error" else 20e-6 + (out_tokens or 0) * 1e-6,
        ))
    return rows


@pytest.mark.slow  # about 20 s on 2 cores: writing the 100k rows takes most of it
def test_100k_rows_export_to_partitioned_parquet_that_duckdb_reads_as_the_comparison_table(run_log, tmp_path):
    exp_id = "big-experiment"
    t0 = time.perf_counter()
    rows = _fake_rows(exp_id, 100_000)
    for i in range(0, len(rows), 10_000):
        run_log.add_runs(rows[i:i + 10_000])
    t_write = time.perf_counter() - t0

    t0 = time.perf_counter()
    out = run_log.export(exp_id, tmp_path / "export", partition_by=["variant", "model"])
    t_export = time.perf_counter() - t0
    folders = sorted(p.relative_to(out / "runs").parent.as_posix() for p in (out / "runs").rglob("*.parquet"))
    assert len(folders) == 4 and folders[0].startswith("variant=honest/model=anthropic")

    t0 = time.perf_counter()
    got = duckdb.sql(COMPARISON_SQL.format(runs=out / "runs")).df()
    t_query = time.perf_counter() - t0
    assert got.n.sum() == 100_000

    want = run_log.summary(exp_id).reset_index()  # two models: per variant and model
    want = want.sort_values(["variant", "model"]).reset_index(drop=True)
    for col in ["variant", "model", "n", "answered", "escaped", "errors", "output_tokens"]:
        assert list(got[col]) == list(want[col]), col
    assert list(got.mean_latency_ms) == pytest.approx(list(want.mean_latency_ms), abs=0.051)
    # the summary shows NaN cost when any call's price is unknown (errors cost nothing here: NULL)
    assert got.cost_usd.notna().all()
    print(f"\n100k rows: log write {t_write:.1f}s, partitioned export {t_export:.1f}s, DuckDB query {t_query:.2f}s")


def test_export_partitions_by_date_and_keeps_the_default_layout(run_log, tmp_path):
    run_log.add_runs(_fake_rows("small", 40))
    plain = run_log.export("small", tmp_path / "plain")
    assert sorted(p.name for p in plain.iterdir()) == ["grades.parquet", "runs.parquet"]
    dated = run_log.export("small", tmp_path / "dated", partition_by="date")
    (day,) = [p.name for p in (dated / "runs").iterdir()]
    assert day.startswith("date=20")
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{dated}/runs/**/*.parquet', hive_partitioning=true)")
    assert n.fetchall()[0][0] == 40
    with pytest.raises(lab.StoreError, match="not columns of the runs table"):
        run_log.export("small", tmp_path / "bad", partition_by=["colour"])


def test_cli_exports_a_partitioned_table(run_log, tmp_path, capsys):
    from lab.cli import main

    run_log.add_runs(_fake_rows("cli-export", 8))
    dest = tmp_path / "out"
    assert main(["--log", str(run_log.path), "export", "cli-export", str(dest), "--partition-by", "model"]) == 0
    assert "runs/ (partitioned by model)" in capsys.readouterr().out
    assert sorted(p.name for p in (dest / "runs").iterdir()) == [
        "model=anthropic%3Aclaude-haiku-4-5", "model=openai%3Agpt-4o-mini"]
