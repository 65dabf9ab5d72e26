"""The install's smoke test: load the bundled model in a worker process and generate a few tokens.

    python tools/smoke.py          # prints what the model said; exit code 1 with one paragraph if it crashed

``make install`` runs it after installing, so a build that dies on this CPU is found at install
time, with what to do, instead of on the first call in a notebook. An install tool, not part of the
runtime package: it imports the installed ``lab`` like any user of it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lab.errors import LabError
from lab.providers.local import LocalWorker, WorkerDied, bundled_model_path

REBUILD = "make install-llama REBUILD=1 && make install"


def crash_advice(exc: WorkerDied) -> str:
    """One paragraph for a worker that crashed: what happened, the likely cause, what to do."""
    return (
        f"The smoke test failed: llama-cpp-python crashed while loading or running the bundled model "
        f"({exc}). A crash by a signal (SIGSEGV, SIGILL) on the first call almost always means a native "
        "build: llama.cpp was compiled for CPU features this machine advertises but its hypervisor does not "
        "enable (Intel AMX on some cloud VMs), often because pip reused a wheel from its cache that was built "
        "with -march=native. Rebuild it portable (no native flags, a fresh build that bypasses pip's cache) "
        f"with `{REBUILD}`, or by hand: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON "
        "-DGGML_FMA=ON -DGGML_F16C=ON\" pip install --force-reinstall --no-deps --no-cache-dir "
        "--no-binary llama-cpp-python llama-cpp-python==0.3.36."
    )


def smoke(model: str | Path | None = None, *, max_tokens: int = 8, python: str | None = None) -> str:
    """Generate ``max_tokens`` tokens with ``model`` (default: the bundled SmolLM2) in a fresh worker
    process and return the text. Raises :class:`WorkerDied` if the worker crashed."""
    path = Path(model) if model is not None else bundled_model_path("smollm2")
    worker = LocalWorker(path, n_ctx=512, python=python)
    try:
        resp = worker.request({"op": "chat", "messages": [{"role": "user", "content": "Say hello."}],
                               "params": {"max_tokens": max_tokens, "temperature": 0.0, "seed": 1}})
    finally:
        worker.close()
    return resp["choices"][0]["message"].get("content") or ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    t0 = time.perf_counter()
    try:
        text = smoke(argv[0] if argv else None)
    except WorkerDied as exc:
        print(crash_advice(exc), file=sys.stderr)
        return 1
    except LabError as exc:
        print(f"The smoke test failed: {exc}", file=sys.stderr)
        return 1
    if not text.strip():
        print("The smoke test failed: the bundled model loaded but generated no text.", file=sys.stderr)
        return 1
    print(f"smoke test: the local model answered {text.strip()!r} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
