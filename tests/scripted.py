"""A small deterministic provider for fast unit tests: ``scripted:<name>``.

Register a script with ``SCRIPTS[name] = fn`` where ``fn(messages, params) -> str``. Built-ins:
``echo`` (the last user message), ``unsure`` (always "UNSURE"), ``seeded`` (an answer picked by
the call's seed, so repeats differ and a fixed seed reproduces), ``rambles`` (the last user message
cut to ``max_tokens`` words, a word a token, finishing with ``length`` when cut). A script may return
``(text, finish_reason)``; a plain text finishes with ``stop``. End-to-end tests use the real local
model and real servers instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from lab.providers import Completion, Provider, register_provider

Script = Callable[[list[dict[str, str]], dict[str, Any]], "str | tuple[str, str | None]"]


def _rambles(messages: list[dict[str, str]], params: dict[str, Any]) -> tuple[str, str]:
    words, limit = messages[-1]["content"].split(), params.get("max_tokens")
    if limit is not None and len(words) > limit:
        return " ".join(words[:limit]), "length"
    return " ".join(words), "stop"


SCRIPTS: dict[str, Script] = {
    "echo": lambda m, p: m[-1]["content"],
    "unsure": lambda m, p: "UNSURE",
    "seeded": lambda m, p: random.Random(p.get("seed")).choice(["positive", "negative", "UNSURE"]),
    "rambles": _rambles,
}
CALLS: list[dict[str, Any]] = []  # every call made, for "no model call was made" assertions


class ScriptedProvider(Provider):
    default_concurrency = 4
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "repeat_penalty"})
    honours_seed = True

    def __init__(self, model: str, name: str, delay: float = 0.0, **_: Any):
        super().__init__(model)
        if name not in SCRIPTS:
            from lab.errors import ModelSpecError

            raise ModelSpecError(f"no script {name!r}")
        self.script = SCRIPTS[name]
        self.delay = delay

    async def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> Completion:
        CALLS.append({"model": self.model, "messages": messages, "params": params})
        if self.delay:
            await asyncio.sleep(self.delay)
        got = self.script(messages, params)
        text, finish = got if isinstance(got, tuple) else (got, "stop")
        return Completion(text=text, input_tokens=sum(len(m["content"].split()) for m in messages),
                          output_tokens=len(text.split()), finish_reason=finish)


register_provider("scripted", lambda model, rest, options: ScriptedProvider(model, rest, **options))
