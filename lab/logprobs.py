"""Token log-probabilities boiled down to the small confidence record one run row keeps.

A provider that returns log-probabilities (``logprobs=True, top_logprobs=N``) gives, per generated
token, its log-probability and the N most likely tokens at that position. The log keeps only:

- ``p_answer``: probability of the answer's first word (the product over its tokens, from the
  first token that is not whitespace to the next whitespace or punctuation, at most
  :data:`ANSWER_TOKENS`);
  ``answer`` is that word as generated;
- ``p_first``: probability of that first answer token alone, and ``first``: the top alternatives
  at that position (token, log-probability), enough to score "probability of being right" for
  single-token answers (:func:`probability_of`);
- ``p_escape``: probability that the answer starts with the declared escape string: the summed
  probability of the alternatives at the first position that begin it (``None`` when none of the
  top N does, with ``p_escape_max``, the N-th probability, as its upper bound);
- ``tokens``: the first :data:`ANSWER_TOKENS` tokens with their log-probabilities, and
  ``logprob_sum`` / ``n_tokens`` over the whole output.

No vocabularies, no full distributions: a few hundred bytes a run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

ANSWER_TOKENS = 8
#: how many alternatives per position a confidence run asks for (OpenAI allows up to 20)
TOP_LOGPROBS = 10


def _prob(lp: float) -> float:
    return math.exp(lp) if lp is not None and lp > -math.inf else 0.0


def _starts(alt: str, target: str) -> bool:
    """Whether generating token ``alt`` first is a start of ``target`` (case and leading space ignored)."""
    a, t = alt.strip().casefold(), target.strip().casefold()
    return bool(a) and (t.startswith(a) or a.startswith(t))


def summarize(tokens: Sequence[Any], escape_text: str | None = None) -> dict[str, Any] | None:
    """The confidence record for one output's tokens (:class:`lab.providers.base.TokenLogprob`);
    None when there are none."""
    if not tokens:
        return None
    i0 = next((i for i, t in enumerate(tokens) if t.token.strip()), 0)
    answer = [tokens[i0]]
    for t in tokens[i0 + 1:i0 + ANSWER_TOKENS]:
        if not t.token or t.token[0].isspace() or not any(c.isalnum() for c in t.token):
            break  # the word ends at a space or at punctuation ("Paris" in "Paris.")
        answer.append(t)
    first = tokens[i0]
    top = list(first.top) or [(first.token, first.logprob)]
    rec: dict[str, Any] = {
        "answer": "".join(t.token for t in answer),
        "p_answer": _prob(sum(t.logprob for t in answer)),
        "p_first": _prob(first.logprob),
        "first": [[tok, round(lp, 6)] for tok, lp in top],
        "tokens": [[t.token, round(t.logprob, 6)] for t in tokens[:ANSWER_TOKENS]],
        "logprob_sum": float(sum(t.logprob for t in tokens)),
        "n_tokens": len(tokens),
    }
    if escape_text:
        hits = {tok: lp for tok, lp in top if _starts(tok, escape_text)}
        rec["p_escape"] = sum(_prob(lp) for lp in hits.values()) if hits else None
        rec["p_escape_max"] = None if hits else min(_prob(lp) for _, lp in top)
    return rec


def _alternatives(expected: Any) -> list[str]:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return []
    values: Iterable[Any] = expected if isinstance(expected, (list, tuple)) else [expected]
    return [str(v) for v in values if str(v).strip()]


def probability_of(record: dict[str, Any] | None, expected: Any) -> float | None:
    """The model's probability of answering ``expected`` (a value or a list of accepted values),
    read from the first answer position: the summed probability of the top alternatives whose
    token is the start of an accepted answer. Meaningful for single-token answers ("Paris",
    "3", "yes"); None without a record or an expected answer."""
    if not record:
        return None
    accepted = _alternatives(expected)
    if not accepted:
        return None
    hits = {tok: lp for tok, lp in record.get("first") or [] if any(_starts(tok, a) for a in accepted)}
    return float(sum(_prob(lp) for lp in hits.values()))
