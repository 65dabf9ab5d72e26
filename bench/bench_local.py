"""Local model throughput: the lab (``local:smollm2``, llama.cpp in the lab's worker process) against raw
llama-cpp-python in this process, on the same prompts, parameters and seeds, taking turns. Tokens/s =
output tokens / wall time, the model already loaded for both. Target: lab >= 0.95x raw. Also: the
per-call cost of the process boundary (a round trip to the worker carrying a call's messages and a
response-sized reply, no generation).

    python bench/bench_local.py                  # 4 prompts x 32 tokens, 3 runs
    python bench/bench_local.py --prompts 32 --max-tokens 128 --runs 5
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from _common import machine, median, report, tmpdir, verdict

import lab
from lab.providers.local import bundled_model_path, worker_for
from lab.seeds import derive_seed

PROMPT = ("task: local\nparams: {temperature: 0.7, max_tokens: %d}\nvariants:\n  plain:\n"
          "    system: Answer in two or three sentences.\n    user: '{{ question }}'\n")
QUESTIONS = ["Why is the sky blue?", "What is a prime number?", "How do bees make honey?",
             "Why do we have seasons?", "What does a compiler do?", "How does a bicycle stay upright?",
             "What is the difference between weather and climate?", "Why is sea water salty?"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--main-thread", action="store_true", help="also time raw calls from the main thread")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from llama_cpp import Llama

    inputs = [{"id": f"q{i}", "question": QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})")}
              for i in range(a.prompts)]
    # the same model file and settings as lab.providers.local, in its own instance
    raw_llm = Llama(model_path=str(bundled_model_path("smollm2")), n_ctx=4096, n_threads=os.cpu_count() or 2,
                    verbose=False)
    lab_tps: list[float] = []
    lab_ms: list[float] = []
    raw_tps: dict[str, list[float]] = {"main": [], "thread": []}
    same: list[bool] = []
    with tmpdir() as tmp:
        folder = Path(tmp)
        prompt = folder / "local.yaml"
        prompt.write_text(PROMPT % a.max_tokens)
        exp0 = lab.experiment(prompt, inputs[:1], seed=a.seed, log=folder / "warm.db", progress="off")
        exp0.run()  # loads the lab's model
        raw_llm.create_chat_completion(messages=exp0.plan()[0].messages, max_tokens=4)
        for r in range(a.runs):
            exp = lab.experiment(prompt, inputs, seed=a.seed, log=folder / f"lab{r}.db", progress="off")
            calls = exp.plan()

            def run_lab() -> None:
                t0 = time.perf_counter()
                runs = exp.run()
                wall = time.perf_counter() - t0
                out["lab"] = runs.df.set_index("input_id")
                lab_tps.append(out["lab"]["output_tokens"].sum() / wall)
                lab_ms.append(wall * 1000 / len(runs.df))

            def run_raw(where: str) -> None:
                t0 = time.perf_counter()
                tokens = 0
                for c in calls:
                    resp = raw_llm.create_chat_completion(
                        messages=c.messages, temperature=0.7, max_tokens=a.max_tokens,
                        seed=derive_seed(a.seed, c.row.id, c.repeat))
                    tokens += resp["usage"]["completion_tokens"]
                    out["raw"][c.row.id] = resp["choices"][0]["message"]["content"]
                raw_tps[where].append(tokens / (time.perf_counter() - t0))

            def raw_in_thread() -> None:  # the lab calls llama.cpp from a worker thread; time raw that way too
                t = threading.Thread(target=run_raw, args=("thread",))
                t.start()
                t.join()

            out: dict = {"raw": {}}
            steps = [run_lab, raw_in_thread] + ([lambda: run_raw("main")] if a.main_thread else [])
            for step in steps[r % len(steps):] + steps[:r % len(steps)]:  # rotate who goes first
                step()
            same.append(all(out["lab"].loc[k, "output"] == v for k, v in out["raw"].items()))
            main_txt = f", {raw_tps['main'][-1]:.1f} tok/s (main thread)" if a.main_thread else ""
            print(f"run {r + 1}: lab {lab_tps[-1]:.1f} tok/s  raw {raw_tps['thread'][-1]:.1f} tok/s (worker thread)"
                  f"{main_txt}  outputs identical: {same[-1]}")
        boundary_us, call_ms = _boundary(exp0.plan()[0].messages, a.max_tokens), median(lab_ms)
    lab_m, thread_m = median(lab_tps), median(raw_tps["thread"])
    main_m = median(raw_tps["main"]) if a.main_thread else None
    raw_m = max(thread_m, main_m or 0)  # compare against the faster way of calling raw
    lines = [
        f"Machine: {machine()}.", "",
        f"SmolLM2-135M-Instruct (GGUF, llama-cpp-python, {os.cpu_count()} threads), {a.prompts} prompts x up to "
        f"{a.max_tokens} output tokens, temperature 0.7, the same seed per prompt for both; median of {a.runs} runs "
        "taking turns (who goes first rotates); model load excluded. The lab runs llama.cpp in its worker "
        "process; raw runs in this process, from a worker thread (with `--main-thread` also from the main "
        "thread); the ratio is against the fastest raw. On a shared machine other jobs' load swings the "
        "figures run to run: read the per-run lines, and the load average above.", "",
        "| what | output tokens/s | ratio |", "| --- | ---: | ---: |",
        *([f"| raw `Llama.create_chat_completion`, main thread | {main_m:.1f} | {main_m / raw_m:.2f}x |"]
          if main_m is not None else []),
        f"| raw `Llama.create_chat_completion`, worker thread | {thread_m:.1f} | {thread_m / raw_m:.2f}x |",
        f"| lab `Experiment.run()` on `local:smollm2` (every row logged) | {lab_m:.1f} | {lab_m / raw_m:.2f}x |", "",
        f"Process boundary: {boundary_us:.0f} µs per call (median round trip to the worker with the call's "
        f"messages and a {a.max_tokens}-token-sized reply, no generation), {boundary_us / 10 / call_ms:.3f}% of "
        f"the lab's mean call ({call_ms:.0f} ms).", "",
        f"Outputs identical to raw with the same seeds: {'yes' if all(same) else '**no**'}. "
        f"Target >= 0.95x: {verdict(lab_m / raw_m >= 0.95)}.", "",
        f"Reproduce: `python bench/bench_local.py --prompts {a.prompts} --max-tokens {a.max_tokens} --runs {a.runs}`",
    ]
    report("Local model", lines, write=not a.no_write)


def _boundary(messages: list[dict], max_tokens: int, n: int = 300) -> float:
    """Median µs of a round trip to the worker carrying a call's messages and a response-sized reply."""
    worker = worker_for(bundled_model_path("smollm2"))
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * max_tokens},
                          "finish_reason": "length"}],
             "usage": {"prompt_tokens": 40, "completion_tokens": max_tokens, "total_tokens": 40 + max_tokens}}
    req = {"op": "ping", "payload": {"messages": messages, "reply": reply}}
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        worker.request(req)
        times.append((time.perf_counter() - t0) * 1e6)
    return median(times)


if __name__ == "__main__":
    main()
