"""Batch overhead and replay against the loopback OpenAI server.

Batch: N calls at concurrency C against a server that holds every answer for L seconds. The ideal
wall time is N*L/C; the baseline is raw ``AsyncOpenAI`` calls behind an ``asyncio.Semaphore(C)``,
measured in the same run against the same server. Targets: lab <= 1.10x ideal, and lab <= 1.05x the raw
SDK at 400, 4,000 and 20,000 calls (``--calls 4000 --concurrency 64 --latency 0.05``). ``--log-rows N``
has each lab run write into a log that already holds N rows (a team's log after a while).

The client is CPU-bound here (about 2 ms of SDK work a call on these cores), and the speed of a shared
2-core machine drifts by tens of percent within a minute, so each run measures raw and lab back to
back (rotating which goes first) and the verdict uses the median of the per-run ratios; the
medians of the walls are printed too. ``--breakdown`` adds a third arm per run, the lab with its
SQLite writes replaced by no-ops (rows are not kept: a measurement only), which splits the lab's time
over raw into the log's share and the rest. ``--profile FILE`` also writes a cProfile of one lab run.

The lab is measured on each backend asked for (``--backend``, default both): a SQLite file and a
PostgreSQL database on a throwaway local server (tests/postgres.py) sharing the same cores, the
honest worst case. ``cli`` arms time the whole ``python -m lab run`` command in this process
(the run, then its summary, grades and findings printed), as a user meets it.

Replay: the same experiment (same seed) run again with ``replay=True``, every answer served from the
log. Target: >= 50x faster than the first run, identical outputs.

    python bench/bench_batch.py                 # 400 calls, concurrency 16, 100 ms, 3 runs
    python bench/bench_batch.py --calls 2000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import shutil
import time

from _common import (  # noqa: F401
    ROOT,
    loopback,
    machine,
    median,
    prompt_file,
    raw_openai_calls,
    records,
    report,
    tmpdir,
    verdict,
)

import lab


async def raw_sdk(base_url: str, calls: int, concurrency: int, *, post: bool = False) -> float:
    t0 = time.perf_counter()
    await raw_openai_calls(base_url, calls, concurrency, post=post)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    ap.add_argument("--profile", help="write a cProfile (pstats) of one more lab run to this file")
    ap.add_argument("--no-replay", action="store_true", help="measure the first run only")
    ap.add_argument("--breakdown", action="store_true",
                    help="also run the lab with its SQLite writes replaced by no-ops (where the time goes)")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both",
                    help="the run log(s) the lab arms write to (default both)")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-command arms")
    ap.add_argument("--log-rows", type=int, default=0,
                    help="each lab run writes into a SQLite log that already holds this many rows of other "
                         "experiments (a team's log after a while), copied from one made once")
    a = ap.parse_args()
    if a.log_rows and a.backend != "sqlite":
        ap.error("--log-rows needs --backend sqlite")
    ideal = a.calls * a.latency / a.concurrency
    backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]

    raw_walls, lab_walls, replay_walls, identical, nolog_walls, post_walls = [], [], [], [], [], []
    extra_walls: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        from pathlib import Path

        url = stack.enter_context(loopback("openai", a.latency))
        folder = Path(stack.enter_context(tmpdir()))
        server = None
        if "postgresql" in backends:
            from tests.postgres import fresh_database, postgres_server

            server = stack.enter_context(postgres_server())
        prompt = prompt_file(folder)
        inputs = folder / "inputs.jsonl"
        inputs.write_text("".join(json.dumps(r) + "\n" for r in records(a.calls)))
        model = f"openai-compatible:{url}#gpt-loopback"
        asyncio.run(raw_sdk(url, 32, a.concurrency))  # warm-up: imports, connections
        import lab.cli
        import lab.findings
        import lab.grades
        import lab.holdout
        import lab.techniques._common

        grown = folder / "grown.db"
        if a.log_rows:
            from bench_log import plan as log_rows

            with contextlib.closing(lab.log(grown)) as seed_log:
                rows = log_rows(a.log_rows + 10_000)[10_000:]  # other experiments than the bench's own
                for k in range(0, len(rows), 2000):
                    seed_log.add_runs(rows[k:k + 2000])

        def target(backend: str, name: str) -> str:
            if backend != "sqlite":
                return fresh_database(server)
            if a.log_rows:
                shutil.copyfile(grown, folder / f"{name}.db")
            return str(folder / f"{name}.db")

        def lab_run(i: int, tag: str = "first", backend: str = backends[0]) -> tuple[float, lab.Runs]:
            log = lab.log(target(backend, f"{tag}{i}"))
            t0 = time.perf_counter()  # planning (rendering, checks) is part of the lab's time
            first = lab.experiment(prompt, records(a.calls), model=model, seed=1, concurrency=a.concurrency,
                                   log=log, progress="off", id=f"{tag}-{i}").run()
            return time.perf_counter() - t0, first

        def cli_run(i: int, backend: str) -> float:
            from lab.cli import main as cli

            log = target(backend, f"cli{i}")
            lab.log(log).close()  # the log exists, as it would for a user
            out = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(out):
                code = cli(["--log", log, "run", str(prompt), "--inputs", str(inputs), "--model", model, "--seed", "1",
                            "--concurrency", str(a.concurrency), "--progress", "off"])
            wall = time.perf_counter() - t0
            assert code == 0 and f"{a.calls} calls in" in out.getvalue(), out.getvalue()[-2000:]
            return wall

        def nolog_run(i: int) -> float:
            from lab.store import writer

            real = writer._write_items
            writer._write_items = lambda db, items: 0  # the database work only: futures, thread, rows built
            try:
                return lab_run(i, "nolog")[0]
            finally:
                writer._write_items = real

        arms = (["raw", "rawpost", "lab"] + (["nolog"] if a.breakdown else []) + [f"lab {b}" for b in backends[1:]]
                + ([] if a.no_cli else [f"cli {b}" for b in backends]))
        for i in range(a.runs):
            # rotate the order: a machine speeding up or slowing down (or a process growing) favours no arm
            got: dict[str, float] = {}
            for arm in arms[i % len(arms):] + arms[:i % len(arms)]:
                if arm == "raw":
                    got[arm] = asyncio.run(raw_sdk(url, a.calls, a.concurrency))
                elif arm == "rawpost":
                    got[arm] = asyncio.run(raw_sdk(url, a.calls, a.concurrency, post=True))
                elif arm == "lab":
                    got[arm], first = lab_run(i)
                elif arm.startswith("lab "):
                    got[arm] = lab_run(i, "other", arm.split()[1])[0]
                elif arm.startswith("cli "):
                    got[arm] = cli_run(i, arm.split()[1])
                else:
                    got[arm] = nolog_run(i)
            for arm in arms:
                if " " in arm:
                    extra_walls.setdefault(arm, []).append(got[arm])
            raw_walls.append(got["raw"])
            post_walls.append(got["rawpost"])
            lab_walls.append(got["lab"])
            line = (f"run {i + 1}: raw {got['raw']:.3f}s  raw the lab's way {got['rawpost']:.3f}s  "
                    f"lab {got['lab']:.3f}s ({got['lab'] / got['raw']:.3f}x; {got['lab'] / got['rawpost']:.3f}x the lab's way)")
            line += "".join(f"  {arm} {got[arm]:.3f}s ({got[arm] / got['raw']:.3f}x)" for arm in arms if " " in arm)
            if a.breakdown:
                nolog_walls.append(got["nolog"])
                line += f"  lab without SQLite writes {got['nolog']:.3f}s ({got['nolog'] / got['raw']:.3f}x)"
            if a.no_replay:
                replay_walls.append(float("nan"))
                identical.append((first.df["outcome"] == "answered").all())
                print(line)
                continue
            log = first.log
            t0 = time.perf_counter()
            second = lab.experiment(prompt, records(a.calls), model=model, seed=1, concurrency=a.concurrency,
                                    log=log, progress="off", id=f"replay-{i}", replay=True).run()
            replay_walls.append(time.perf_counter() - t0)
            a_out = first.df.set_index("input_id")["output"].sort_index()
            b_out = second.df.set_index("input_id")["output"].sort_index()
            identical.append(bool(a_out.equals(b_out)) and second.df["replayed_from"].notna().all()
                             and (first.df["outcome"] == "answered").all())
            print(line + f"  replay {replay_walls[-1]:.4f}s")

        if a.profile:
            import cProfile

            log = lab.log(folder / "profiled.db")
            exp = lab.experiment(prompt, records(a.calls), model=model, seed=1, concurrency=a.concurrency,
                                 log=log, progress="off", id="profiled")
            cProfile.runctx("exp.run()", globals(), {"exp": exp}, a.profile)
            print(f"profile of one lab run: {a.profile} (python -m pstats {a.profile})")

    raw, lab_w, rep = median(raw_walls), median(lab_walls), median(replay_walls)
    ratio = median([lw / rw for lw, rw in zip(lab_walls, raw_walls)])
    speedup = lab_w / rep
    lines = [
        f"Machine: {machine()}.",
        "",
        f"{a.calls} calls at concurrency {a.concurrency} against the loopback OpenAI server (own process) holding "
        f"each answer {a.latency * 1000:.0f} ms; {a.runs} runs, raw and lab back to back in each (rotating "
        f"which goes first). Ideal = calls x latency / concurrency = {ideal:.2f} s. "
        + (f"Each lab run writes into a log that already holds {a.log_rows:,} rows of other experiments. "
           if a.log_rows else "") + "Lab times include planning "
        "(rendering and checks) and writing every row. \"vs raw SDK\" is the median of the per-run ratios.",
        "",
        "| what | median wall (s) | vs ideal | vs raw SDK | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| raw `AsyncOpenAI` + semaphore (`chat.completions.create`) | {raw:.3f} | {raw / ideal:.3f}x | 1.000x | (baseline) |",
        f"| raw `AsyncOpenAI` the lab's way (`client.post`, the JSON answer read directly) | {median(post_walls):.3f} | "
        f"{median(post_walls) / ideal:.3f}x | {median([p / r for p, r in zip(post_walls, raw_walls)]):.3f}x | (second baseline) |",
        f"| lab `Experiment.run()` (logs every row), {backends[0]} | {lab_w:.3f} | {lab_w / ideal:.3f}x | {ratio:.3f}x | "
        f"<= 1.10x ideal: {verdict(lab_w / ideal <= 1.10)}; <= 1.05x raw: {verdict(ratio <= 1.05)} |",
    ]
    what = {"lab": "lab `Experiment.run()` (logs every row)",
            "cli": "`python -m lab run`, the whole command (run, summary, grades, findings)"}
    for arm, walls in extra_walls.items():
        kind, backend = arm.split()
        arm_ratio = median([w / rw for w, rw in zip(walls, raw_walls)])
        lines.append(f"| {what[kind]}, {backend} | {median(walls):.3f} | {median(walls) / ideal:.3f}x | "
                     f"{arm_ratio:.3f}x | (reported) |")
    lines.append(f"| lab `Experiment.run()`, {backends[0]}, against the calls made the lab's way (its own work: planning, "
                 f"rows, log) | {lab_w:.3f} | | {median([lw / p for lw, p in zip(lab_walls, post_walls)]):.3f}x | (reported) |")
    if a.breakdown:
        nolog = median(nolog_walls)
        nolog_ratio = median([nw / rw for nw, rw in zip(nolog_walls, raw_walls)])
        lines.append(f"| lab with its SQLite writes as no-ops (where the time goes; rows not kept) | {nolog:.3f} | "
                     f"{nolog / ideal:.3f}x | {nolog_ratio:.3f}x | (diagnostic) |")
    if not a.no_replay:
        lines.append(
            f"| lab replay from the log (same seed, `replay=True`) | {rep:.4f} | | | {speedup:.0f}x faster than the "
            f"first run, outputs {'identical' if all(identical) else '**differ**'}; >= 50x: "
            f"{verdict(speedup >= 50 and all(identical))} |")
    lines += [
        "",
        f"Per run (raw, lab): {', '.join(f'{r:.2f}/{lw:.2f}' for r, lw in zip(raw_walls, lab_walls))} s.",
        "",
        f"Reproduce: `python bench/bench_batch.py --calls {a.calls} --concurrency {a.concurrency} "
        f"--latency {a.latency} --runs {a.runs} --backend {a.backend}{' --no-replay' if a.no_replay else ''}"
        f"{' --breakdown' if a.breakdown else ''}{f' --log-rows {a.log_rows}' if a.log_rows else ''}`",
    ]
    report("Batch overhead and replay", lines, write=not a.no_write)


if __name__ == "__main__":
    main()
