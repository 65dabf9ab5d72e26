"""Peak memory (RSS) of a big batch against the loopback OpenAI server.

Each measurement runs in a fresh child process and reports its own peak RSS (``ru_maxrss``):
``baseline`` imports lab and the openai SDK and plans nothing; ``raw`` makes the calls with raw
``AsyncOpenAI`` behind a semaphore; ``lab`` runs them as one experiment (every row logged).
Target: lab <= the raw SDK's peak + 50 MB for 20k calls (the runner's workers pull calls from a lazy
plan; it no longer creates a task per call up front).

    python bench/bench_memory.py                     # 20,000 calls, concurrency 64, 50 ms server latency
    python bench/bench_memory.py --calls 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, loopback, machine, prompt_file, raw_openai_calls, records, report, tmpdir, verdict


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(mode: str, url: str, calls: int, concurrency: int, folder: Path) -> None:
    import openai  # noqa: F401  (the baseline holds the same imports)

    import lab

    t0 = time.perf_counter()
    if mode == "lab":
        runs = lab.experiment(prompt_file(folder), records(calls), model=f"openai-compatible:{url}#gpt-loopback",
                              concurrency=concurrency, log=folder / "mem.db", progress="off").run()
        assert len(runs) == calls, len(runs)
    elif mode == "raw":
        asyncio.run(raw(url, calls, concurrency))
    print(json.dumps({"peak_mb": peak_mb(), "wall_s": time.perf_counter() - t0}))


async def raw(url: str, calls: int, concurrency: int) -> None:
    outs = await raw_openai_calls(url, calls, concurrency)
    assert len(outs) == calls


def measure(mode: str, url: str, calls: int, concurrency: int, folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--url", url, "--calls", str(calls),
                          "--concurrency", str(concurrency), "--folder", str(folder)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", choices=["baseline", "raw", "lab"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.url, a.calls, a.concurrency, a.folder)
        return
    with loopback("openai", a.latency) as url, tmpdir() as tmp:
        got = {mode: measure(mode, url, a.calls, a.concurrency, Path(tmp)) for mode in ("baseline", "raw", "lab")}
    for mode, r in got.items():
        print(f"{mode}: peak {r['peak_mb']:.0f} MB in {r['wall_s']:.1f}s")
    lab_mb, raw_mb, base_mb = got["lab"]["peak_mb"], got["raw"]["peak_mb"], got["baseline"]["peak_mb"]
    lines = [
        f"Machine: {machine()}.", "",
        f"{a.calls:,} calls at concurrency {a.concurrency} against the loopback OpenAI server (own process, "
        f"{a.latency * 1000:.0f} ms latency); peak RSS of a fresh process for each (one run each: peak memory "
        "varies little between runs).", "",
        "| process | peak RSS (MB) | above baseline (MB) | wall (s) |",
        "| --- | ---: | ---: | ---: |",
        f"| baseline: `import lab, openai`, no calls | {base_mb:.0f} | 0 | |",
        f"| raw `AsyncOpenAI` + semaphore | {raw_mb:.0f} | {raw_mb - base_mb:.0f} | {got['raw']['wall_s']:.1f} |",
        f"| lab `Experiment.run()` (every row logged) | {lab_mb:.0f} | {lab_mb - base_mb:.0f} | "
        f"{got['lab']['wall_s']:.1f} |",
        "",
        f"Lab vs raw SDK: {lab_mb / raw_mb:.2f}x, {lab_mb - raw_mb:+.0f} MB. Target lab <= raw + 50 MB: "
        f"{verdict(lab_mb <= raw_mb + 50)}. Wall: lab {got['lab']['wall_s'] / got['raw']['wall_s']:.2f}x raw.", "",
        f"Reproduce: `python bench/bench_memory.py --calls {a.calls} --concurrency {a.concurrency} "
        f"--latency {a.latency}`",
    ]
    report("Memory", lines, write=not a.no_write)


if __name__ == "__main__":
    main()
