"""Show the whole context: exactly what a model sees for one call, before making it.

For local GGUF models this includes the text after the model's own chat template and its token
count; for API models the messages are what is sent (their templates are not public).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .prompts import PromptFile, load_prompt
from .providers import get_provider


@dataclass(frozen=True)
class Context:
    """The messages for one call, and for local models the templated text and its token count."""

    variant: str
    version: str
    messages: list[dict[str, str]]
    model: str
    text: str | None = None
    tokens: int | None = None

    def __str__(self) -> str:
        head = f"{self.variant} ({self.version}) on {self.model}"
        if self.tokens is not None:
            head += f": {self.tokens} tokens"
        body = self.text if self.text is not None else "\n\n".join(
            f"[{m['role']}]\n{m['content']}" for m in self.messages)
        return f"{head}\n{'-' * len(head)}\n{body}"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"  # model context is text, never markup


def context(prompt: str | Path | PromptFile, variant: str, variables: dict[str, Any] | None = None, *,
            model: str = "local:smollm2", history: list[dict[str, str]] | None = None) -> Context:
    """What ``model`` would see for ``variant`` rendered with ``variables`` (after ``history`` turns, if any)."""
    pf = prompt if isinstance(prompt, PromptFile) else load_prompt(prompt)
    v = pf.variant(variant)
    messages = v.render(variables or {})
    if history:
        system = [m for m in messages if m["role"] == "system"]
        messages = system + list(history) + [m for m in messages if m["role"] != "system"]
    provider = get_provider(model)
    text = tokens = None
    chat_prompt = getattr(provider, "chat_prompt", None)
    if chat_prompt is not None:
        text, tokens = chat_prompt(messages)
    return Context(variant=v.name, version=v.version, messages=messages, model=model, text=text, tokens=tokens)
