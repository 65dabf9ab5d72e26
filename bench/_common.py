"""Shared helpers for the benchmarks: the machine, a loopback server in its own process, medians,
and the results table (bench/results.md), where each benchmark owns one section."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load}")


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@contextlib.contextmanager
def loopback(kind: str = "openai", latency: float = 0.1, *extra: str) -> Iterator[str]:
    """A loopback API server in a child process (so it does not share the lab's GIL); yields its base URL."""
    module = {"openai": "tests.loopback.openai_server", "anthropic": "tests.loopback.anthropic_server"}[kind]
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", "--latency", str(latency), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"loopback server did not start (said {url!r})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def server_stats(base_url: str) -> dict[str, Any]:
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(root + "/__loopback__/stats") as r:
        return json.load(r)


def prompt_file(folder: Path) -> Path:
    """A one-variant prompt file for benchmarks."""
    p = folder / "bench.yaml"
    p.write_text("task: bench\nparams: {temperature: 0, max_tokens: 16}\n"
                 "variants:\n  plain:\n    user: \"Say something about item {{ n }}: {{ text }}\"\n")
    return p


def records(n: int) -> list[dict[str, Any]]:
    return [{"id": f"i{i}", "n": i, "text": f"input number {i} " + "word " * 20} for i in range(n)]


def tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="promptlab-bench-")


def write_section(name: str, lines: list[str]) -> None:
    """Replace (or add) the section ``## name`` of bench/results.md with ``lines``."""
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmark results\n\nWritten by `python bench/run_all.py` (or one `bench/bench_*.py`); each section "
        "says which machine and when. Medians of several runs; ratios are against a baseline measured in the "
        "same run.\n")
    body = f"## {name}\n\n" + "\n".join(lines).rstrip() + "\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + body
    RESULTS.write_text(text)
    print(f"wrote section {name!r} of {RESULTS.relative_to(ROOT)}")


async def raw_openai_calls(base_url: str, calls: int, concurrency: int, *, post: bool = False) -> list[str]:
    """The baseline: the same calls the lab makes, through bare AsyncOpenAI behind a semaphore, as
    people write them (``chat.completions.create``) or, with ``post``, the way the lab's provider makes
    them (``client.post`` with the body as sent, the JSON answer read directly)."""
    import json

    import httpx2
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=2, timeout=60)
    sem = asyncio.Semaphore(concurrency)

    async def one(r: dict) -> str:
        body = {"model": "gpt-loopback", "temperature": 0, "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Say something about item {r['n']}: {r['text']}"}]}
        async with sem:
            if post:
                resp = await client.post("/chat/completions", cast_to=httpx2.Response, body=body)
                return json.loads(resp.content)["choices"][0]["message"]["content"]
            return (await client.chat.completions.create(**body)).choices[0].message.content

    try:
        return await asyncio.gather(*(one(r) for r in records(calls)))
    finally:
        await client.close()


def report(name: str, lines: list[str], *, write: bool) -> None:
    """Print a benchmark's figures and, unless told not to, keep them in bench/results.md."""
    print("\n".join(lines))
    if write:
        write_section(name, lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"
