"""What ``confidence=True`` costs on the local model: wall time per call with and without token
log-probabilities (same prompts, parameters and seeds, taking turns, both model instances loaded
first), the size of the record each run keeps, and the memory the ``logits_all`` instance takes.

    python bench/bench_confidence.py                 # 6 questions x 12 tokens, 3 runs
    python bench/bench_confidence.py --runs 5 --max-tokens 32
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from _common import machine, median, tmpdir

import lab

PROMPT = ("task: conf\nescape_hatch: UNSURE\nparams: {temperature: 0.7, max_tokens: %d}\nvariants:\n  plain:\n"
          "    user: 'Answer in one word, or UNSURE if you do not know. {{ question }}'\n")
QUESTIONS = ["What is the capital of France?", "What is the capital of Italy?", "How many legs has a spider?",
             "What colour is the sky?", "Who won the 2031 Rugby World Cup?", "What is the capital of Japan?",
             "What is two plus two?", "What is the middle name of Harold Quenby?"]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=12)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tmpdir() as tmp:
        d = Path(tmp)
        prompt = d / "p.yaml"
        prompt.write_text(PROMPT % a.max_tokens)
        inputs = [{"id": f"q{i}", "question": q} for i, q in enumerate(QUESTIONS[:a.questions])]
        log = lab.log(d / "log.db")
        before = rss_mb()
        lab.experiment(prompt, inputs[:1], seed=1, log=log).run()  # load the plain instance
        plain_mb = rss_mb()
        lab.experiment(prompt, inputs[:1], seed=1, log=log, confidence=True).run()  # and the logits_all one
        both_mb = rss_mb()
        times = {False: [], True: []}
        sizes: list[int] = []
        for r in range(a.runs):
            for conf in (False, True) if r % 2 == 0 else (True, False):
                t0 = time.perf_counter()
                runs = lab.experiment(prompt, inputs, seed=100 + r, log=log, confidence=conf).run()
                times[conf].append((time.perf_counter() - t0) / len(inputs))
                if conf:
                    sizes += [len(json.dumps(c)) for c in runs.df["confidence"] if isinstance(c, dict)]
    print(machine())
    off, on = median(times[False]) * 1000, median(times[True]) * 1000
    print(f"per call, median of {a.runs} runs x {len(inputs)} calls ({a.max_tokens} max tokens):")
    print(f"  confidence off  {off:8.1f} ms")
    print(f"  confidence on   {on:8.1f} ms   ({on / off:.2f}x)")
    print(f"record per run: median {median(sizes):.0f} bytes of JSON (max {max(sizes)})")
    print(f"peak RSS: {before:.0f} MB before, {plain_mb:.0f} MB with the model, {both_mb:.0f} MB with the "
          "logits_all instance too")


if __name__ == "__main__":
    main()
