"""Run every benchmark with its default (short) settings and refresh bench/results.md.

    python bench/run_all.py                 # all of them, a few minutes on 2 cores
    python bench/run_all.py batch log       # only these (batch, log, memory, local)

Each benchmark also runs alone with flags for bigger runs; see ``python bench/bench_<name>.py --help``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["batch", "log", "memory", "local"]


def main(argv: list[str]) -> int:
    chosen = argv or BENCHES
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {BENCHES}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench_{name} ===", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py")], cwd=HERE.parent)
        print(f"=== bench_{name}: {'ok' if code == 0 else f'exit {code}'} in {time.perf_counter() - t0:.0f}s", flush=True)
        if code:
            failed.append(name)
    print(f"\nresults: {HERE / 'results.md'}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
