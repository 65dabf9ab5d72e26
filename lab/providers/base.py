"""The one small interface every provider implements (the registry is in ``registry.py``)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from ..errors import ParameterError


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the most likely alternatives at its position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """What a provider returns for one call. ``logprobs`` is None unless the call asked for them
    (``logprobs``/``top_logprobs`` params) and the provider returns them. ``finish_reason`` is in
    the lab's words (:func:`finish_reason`): ``"length"`` means the answer stopped at max tokens."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None

    def __post_init__(self) -> None:  # every provider's word (a plug-in's too) in the lab's vocabulary
        object.__setattr__(self, "finish_reason", finish_reason(self.finish_reason))


#: each provider's own word for why an answer ended -> the lab's (OpenAI's words, which
#: llama-cpp-python and OpenAI-compatible servers share, are the lab's already)
_FINISH_REASONS = {
    "stop": "stop", "end_turn": "stop", "stop_sequence": "stop", "eos": "stop",
    "length": "length", "max_tokens": "length", "model_context_window_exceeded": "length",
    "content_filter": "content_filter", "refusal": "content_filter",
    "tool_calls": "tool_calls", "function_call": "tool_calls", "tool_use": "tool_calls",
}


def finish_reason(raw: Any) -> str | None:
    """Why an answer ended, in one vocabulary for every provider: ``stop`` (it finished, or met a
    stop sequence), ``length`` (it hit max tokens or the context window), ``content_filter``
    (filtered or refused), ``tool_calls``; None when the provider does not say. A word not in this
    list (a new API value, say Anthropic's ``pause_turn``) is kept as the provider spelled it rather
    than lost."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    return _FINISH_REASONS.get(text, text) or None


#: the parameters that ask a provider for token log-probabilities (OpenAI's and llama.cpp's names)
LOGPROB_PARAMS = frozenset({"logprobs", "top_logprobs"})


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: a server's answer read field by field
    whatever its shape (a missing or mistyped field reads as absent)."""
    return value if isinstance(value, dict) else {}


def token_logprobs(content: Any) -> tuple[TokenLogprob, ...] | None:
    """``choices[0].logprobs.content`` of an OpenAI-style chat completion (SDK objects or the dicts
    llama-cpp-python returns) as :class:`TokenLogprob` records; None when absent."""
    if content is None:
        return None

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    out = []
    for item in content:
        top = tuple((str(get(t, "token")), float(get(t, "logprob"))) for t in (get(item, "top_logprobs") or []))
        out.append(TokenLogprob(str(get(item, "token")), float(get(item, "logprob")), top))
    return tuple(out)


class Provider(abc.ABC):
    """A model behind one async call. One instance serves one run (its clients live on that run's loop)."""

    #: how many calls may be in flight at once unless the user says otherwise
    default_concurrency: int = 4
    #: parameters this provider understands (others are refused before any call)
    supported_params: frozenset[str] = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed"})
    #: whether a seed makes a call reproducible
    honours_seed: bool = False
    #: whether the provider can return token log-probabilities (the ``confidence=True`` opt-in)
    returns_logprobs: bool = False

    def __init__(self, model: str):
        self.model = model  # the full model string, e.g. "local:smollm2"

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise :class:`ParameterError` for parameters this provider cannot honour."""
        unsupported = sorted(set(params) - self.supported_params)
        if unsupported:
            raise ParameterError(
                f"model {self.model!r} does not support parameter(s) {unsupported}; "
                f"it supports {sorted(self.supported_params)}"
            )

    @abc.abstractmethod
    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        """Answer one conversation. Raise :class:`lab.errors.ProviderError` on failure (after retries)."""

    async def aclose(self) -> None:
        """Release clients; called once when a run ends."""


