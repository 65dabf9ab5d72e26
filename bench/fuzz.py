"""The fuzzer at length: the properties of tests/test_fuzz.py with many more examples, and the recovery
file torn at every byte offset. Prints how many examples ran clean (and the first failure, shrunk, if any)
and keeps the counts in bench/results.md.

    python bench/fuzz.py --examples 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PROMPTLAB_PROGRESS", "off")

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.scripted  # noqa: F401  (registers scripted:echo)
from bench._common import machine, report
from tests import fuzz_props as fp


def run(name: str, strategy: Any, check: Callable[..., None], examples: int) -> tuple[str, int, str | None]:
    """Run ``check`` on ``examples`` draws; returns (name, how many ran clean, the failure or None)."""
    clean = [0]

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(value: Any) -> None:
        check(value)
        clean[0] += 1

    try:
        prop()
        return name, clean[0], None
    except Exception as exc:
        return name, clean[0], "".join(traceback.format_exception_only(exc)).strip()[-600:]


def every_offset(tmp: Path) -> tuple[str, int, str | None]:
    base, blob = fp.recovery_blob(tmp)
    clean = 0
    for cut in range(len(blob) + 1):
        try:
            fp.check_recovery(base, blob[:cut], tmp / "work.db")
        except Exception as exc:
            return f"recovery file torn at every byte offset (0..{len(blob)})", clean, f"offset {cut}: {exc!r}"
        clean += 1
    return f"recovery file torn at every byte offset (0..{len(blob)})", clean, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--examples", type=int, default=300, help="examples per property")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    args = ap.parse_args()
    from tests.loopback import OpenAIServer

    t0 = time.perf_counter()
    results = []
    with OpenAIServer() as srv, tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        row = st.fixed_dictionaries({"id": st.one_of(fp.texts, st.integers(), st.none()),
                                     "text": st.one_of(fp.texts, st.none())})
        cases = [
            ("model outputs through the loopback server", fp.texts, lambda t: fp.check_model_output(srv, t)),
            ("raw bytes inside a server's JSON answer", st.binary(max_size=64), lambda b: fp.check_raw_body(srv, b)),
            ("JSONL input sets", st.lists(row, max_size=4), lambda rows: fp.check_file(
                "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass"),
                "p.yaml", fp.PROMPT)),
            ("bytes as a YAML input set", st.binary(max_size=300),
             lambda b: fp.check_file("in.yaml", b, "p.yaml", fp.PROMPT)),
            ("bytes as a prompt file", st.binary(max_size=300),
             lambda b: fp.check_file("p.yaml", b, "in.yaml", "- {id: r1, text: hi}\n")),
            ("text as a template", fp.texts, lambda t: fp.check_file(
                "p.yaml", f"task: t\nvariants:\n  a:\n    user: {json.dumps(t)}\n".encode("utf-8", "surrogatepass"),
                "in.yaml", "- {id: r1, text: hi}\n")),
        ]
        for name, strategy, check in cases:
            results.append(run(name, strategy, check, args.examples))
            print(results[-1][:2], flush=True)
        results.append(every_offset(tmp))
        (tmp / "g").mkdir()
        base, blob = fp.recovery_blob(tmp / "g")
        results.append(run("garbage lines before a recovery file", st.binary(max_size=200),
                           lambda g: fp.check_recovery(base, g + b"\n" + blob, tmp / "g" / "work.db"), args.examples))
    wall = time.perf_counter() - t0
    lines = [f"Machine: {machine()}.", "",
             f"`python bench/fuzz.py --examples {args.examples}`: hypothesis draws per property (lone surrogates, NUL, "
             "invalid UTF-8, huge and deeply nested text); each run as a user would, checking that the run ends "
             "normally or is refused in one error, every finished call is in the log once (or set aside with a "
             f"reason), and the log opens afterwards. Wall {wall:.0f} s.", "",
             "| property | examples run clean | first failure |", "| --- | ---: | --- |"]
    for name, clean, failure in results:
        shown = " ".join((failure or "none").split()).replace("|", "/")
        lines.append(f"| {name} | {clean:,} | {shown} |")
    report("Fuzzing hostile input", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
