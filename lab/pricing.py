"""Known list prices, in US dollars per million tokens. Unknown models cost ``None``, never a guess.

Prices change; check your provider's page and override with :func:`set_price`. Batch APIs
(Anthropic Message Batches, OpenAI Batch) bill half the list price.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParameterError


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def cost(self, input_tokens: int | None, output_tokens: int | None, *, batch: bool = False) -> float | None:
        if input_tokens is None or output_tokens is None:
            return None
        usd = (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6
        return usd * 0.5 if batch else usd


# Keyed by "provider:model" prefix; the longest matching prefix wins (so dated snapshots match).
_PRICES: dict[str, Price] = {
    "local:": Price(0.0, 0.0),  # runs on your own CPU
    "anthropic:claude-opus-4": Price(15.0, 75.0),
    "anthropic:claude-sonnet-4": Price(3.0, 15.0),
    "anthropic:claude-haiku-4": Price(1.0, 5.0),
    "anthropic:claude-3-5-haiku": Price(0.8, 4.0),
    "openai:gpt-4o-mini": Price(0.15, 0.60),
    "openai:gpt-4o": Price(2.50, 10.0),
    "openai:gpt-4.1-nano": Price(0.10, 0.40),
    "openai:gpt-4.1-mini": Price(0.40, 1.60),
    "openai:gpt-4.1": Price(2.0, 8.0),
}


def price_of(model: str) -> Price | None:
    """The price for a model string, or None when it is not known."""
    best = None
    for prefix, price in _PRICES.items():
        if model.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, price)
    return best[1] if best else None


def set_price(model_prefix: str, input_per_mtok: float, output_per_mtok: float) -> None:
    """Declare (or correct) a price, e.g. ``set_price("openai-compatible:", 0, 0)`` for a free local server."""
    if input_per_mtok < 0 or output_per_mtok < 0:
        raise ParameterError(
            f"set_price({model_prefix!r}, ...): prices cannot be negative, got input {input_per_mtok!r} and "
            f"output {output_per_mtok!r} per million tokens"
        )
    _PRICES[model_prefix] = Price(float(input_per_mtok), float(output_per_mtok))
