"""Peak memory (RSS) of a big batch against the loopback OpenAI server.

Each measurement runs in a fresh child process and reports its own peak RSS (``ru_maxrss``):
``baseline`` imports lab and the openai SDK and plans nothing; ``raw`` makes the calls with raw
``AsyncOpenAI`` behind a semaphore; ``lab`` runs them as one experiment (every row logged);
``cli`` is the whole ``python -m lab run`` command (the run, then its summary, grades and findings).
``lab`` and ``cli`` run on each backend asked for: a SQLite file and a PostgreSQL database on a
throwaway local server (tests/postgres.py; the same 2 cores: the honest worst case).
Target: the whole command <= the raw SDK's peak + 50 MB for 20k calls.

    python bench/bench_memory.py                     # 20,000 calls, concurrency 64, 50 ms server latency
    python bench/bench_memory.py --calls 50000 --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, loopback, machine, prompt_file, raw_openai_calls, records, report, tmpdir, verdict


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, url: str, calls: int, concurrency: int, folder: Path, log: str) -> None:
    import openai  # noqa: F401  (the baseline holds the same imports)

    import lab

    if mode == "imports":  # what the command's grading and findings load, without any call or row
        import lab.cli
        import lab.findings
        import lab.grades
        import lab.holdout
    inputs = folder / "inputs.jsonl"
    if mode == "cli":  # written before the clock starts, as a user's input file would be
        inputs.write_text("".join(json.dumps(r) + "\n" for r in records(calls)))
    t0 = time.perf_counter()
    if mode == "lab":
        runs = lab.experiment(prompt_file(folder), records(calls), model=f"openai-compatible:{url}#gpt-loopback",
                              concurrency=concurrency, log=log, progress="off").run()
        assert len(runs) == calls, len(runs)
    elif mode == "cli":
        from lab.cli import main as cli

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli(["--log", log, "run", str(prompt_file(folder)), "--inputs", str(inputs), "--model",
                        f"openai-compatible:{url}#gpt-loopback", "--concurrency", str(concurrency), "--progress", "off"])
        assert code == 0 and f"{calls} calls in" in out.getvalue(), out.getvalue()[-2000:]
    elif mode == "raw":
        asyncio.run(raw(url, calls, concurrency))
    print(json.dumps({"peak_mb": peak_mb(), "wall_s": time.perf_counter() - t0}))


async def raw(url: str, calls: int, concurrency: int) -> None:
    outs = await raw_openai_calls(url, calls, concurrency)
    assert len(outs) == calls


def measure(mode: str, url: str, calls: int, concurrency: int, folder: Path, log: str = "") -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--calls", str(calls),
                          "--concurrency", str(concurrency), "--folder", str(folder), "--log", log],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def log_targets(backends: list[str], folder: Path):
    """name -> a function giving a fresh log of that backend."""
    with contextlib.ExitStack() as stack:
        made = {}
        if "sqlite" in backends:
            counter = iter(range(1000))
            made["sqlite"] = lambda: str(folder / f"mem{next(counter)}.db")
        if "postgresql" in backends:
            from tests.postgres import fresh_database, postgres_server

            server = stack.enter_context(postgres_server())
            made["postgresql"] = lambda: fresh_database(server)
        yield made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--child", choices=["baseline", "imports", "raw", "lab", "cli"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--log", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.url, a.calls, a.concurrency, a.folder, a.log)
        return
    backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    with loopback("openai", a.latency) as url, tmpdir() as tmp, log_targets(backends, Path(tmp)) as fresh:
        got = {mode: measure(mode, url, a.calls, a.concurrency, Path(tmp)) for mode in ("baseline", "imports", "raw")}
        for b in backends:
            for mode in ("lab", "cli"):
                got[f"{mode} {b}"] = measure(mode, url, a.calls, a.concurrency, Path(tmp), fresh[b]())
    for mode, r in got.items():
        print(f"{mode}: peak {r['peak_mb']:.0f} MB in {r['wall_s']:.1f}s")
    raw_mb, base_mb = got["raw"]["peak_mb"], got["baseline"]["peak_mb"]
    what = {"lab": "lab `Experiment.run()` (every row logged)",
            "cli": "`python -m lab run` (run, summary, grades, findings)"}
    rows = [f"| {what[k.split()[0]]}, {k.split()[1]} | {r['peak_mb']:.0f} | {r['peak_mb'] - base_mb:.0f} | "
            f"{r['peak_mb'] - raw_mb:+.0f} | {r['wall_s']:.1f} |" for k, r in got.items() if " " in k]
    verdicts = [f"{k}: {got[k]['peak_mb'] - raw_mb:+.0f} MB ({verdict(got[k]['peak_mb'] <= raw_mb + 50)})"
                for k in got if k.startswith("cli")]
    lines = [
        f"Machine: {machine()}.", "",
        f"{a.calls:,} calls at concurrency {a.concurrency} against the loopback OpenAI server (own process, "
        f"{a.latency * 1000:.0f} ms latency); peak RSS of a fresh process for each (one run each: peak memory "
        "varies little between runs).", "",
        "| process | peak RSS (MB) | above baseline (MB) | vs raw SDK (MB) | wall (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| baseline: `import lab, openai`, no calls | {base_mb:.0f} | 0 | | |",
        f"| baseline + what the grading and findings import (numpy), no calls | "
        f"{got['imports']['peak_mb']:.0f} | {got['imports']['peak_mb'] - base_mb:.0f} | "
        f"{got['imports']['peak_mb'] - raw_mb:+.0f} | |",
        f"| raw `AsyncOpenAI` + semaphore | {raw_mb:.0f} | {raw_mb - base_mb:.0f} | 0 | {got['raw']['wall_s']:.1f} |",
        *rows,
        "",
        f"The whole command vs the raw SDK, target <= raw + 50 MB: {'; '.join(verdicts)}. The command's "
        "summary is SQL; its grades and findings read the columns they use as plain rows, with numpy (the t "
        "and chi-square tails in lab.distributions), never pandas or scipy.", "",
        f"Reproduce: `python bench/bench_memory.py --calls {a.calls} --concurrency {a.concurrency} "
        f"--latency {a.latency} --backend {a.backend}`",
    ]
    report("Memory", lines, write=not a.no_write)


if __name__ == "__main__":
    main()
