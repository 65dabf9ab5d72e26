"""Text as the lab compares it: normalization for matching, numbers in text, the escape hatch.

Base layer (imports nothing from the lab but errors): graders, tables, prompts and techniques all
compare outputs the same way through these functions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

_ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


_MARKUP = re.compile(r"<[^<>]{0,200}>|[*_`~]")


def normalize_for_matching(text: str) -> str:
    """The text an escape hatch is matched against: terminal escapes (ANSI colours, titles) and
    markup (HTML tags, markdown ``*``, ``_``, `````` ` ``````, ``~``) removed, then Unicode NFKC (full-width
    and other compatibility forms become plain letters) and case folding."""
    text = _MARKUP.sub("", _ANSI.sub("", text))
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class EscapeHatch:
    """The declared way out. ``match``: ``word`` (the text appears as a whole word), ``start`` (the
    output starts with it) or ``exact`` (the output is just that). Both sides are compared after
    :func:`normalize_for_matching`, so ``Unsure.``, ``**UNSURE**``, full-width ``ＵＮＳＵＲＥ`` and an
    ANSI-coloured ``UNSURE`` all count; surrounding quotes and ``.!`` are ignored for ``start``/``exact``."""

    text: str
    match: str = "word"

    @property
    def rule(self) -> str:
        """The matching rule in plain words, for a findings line ("escaped = ...")."""
        return {"word": f"the output contains {self.text!r} as a whole word (anywhere, even after 'not')",
                "start": f"the output starts with {self.text!r}",
                "exact": f"the output is just {self.text!r}"}.get(self.match, self.match)

    def detect(self, output: str | None) -> bool:
        """True when ``output`` takes the way out."""
        if not output:
            return False
        norm = normalize_for_matching(output)
        hatch = normalize_for_matching(self.text).strip()
        if not hatch:
            return False
        out = norm.strip().strip("\"'.!").strip()
        if self.match == "exact":
            return out == hatch
        if self.match == "start":
            return out.startswith(hatch)
        return re.search(rf"(?<!\w){re.escape(hatch)}(?!\w)", norm) is not None


_SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, /, **values: str) -> str:
    """Fill ``{name}`` slots of a built-in prompt in one pass: text put into one slot is never read
    for another, so a request that itself contains ``{answer}`` stays as written. Unknown slots stay."""
    return _SLOT.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


_NUMBER = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|(?<![\w.])[-+]?\.\d+(?![\w])")


def normalize(text: Any) -> str:
    """Text as ``normalized`` matching compares it: Unicode NFKC, case-folded, punctuation and
    symbols dropped (a ``.`` between digits is kept, so ``9.9`` stays ``9.9``), whitespace collapsed."""
    s = unicodedata.normalize("NFKC", "" if text is None else str(text)).casefold()
    out = []
    for i, ch in enumerate(s):
        cat = unicodedata.category(ch)
        if ch == "." and 0 < i < len(s) - 1 and s[i - 1].isdigit() and s[i + 1].isdigit():
            out.append(ch)
        elif cat[0] in "PS":
            out.append(" ")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def numbers_in(text: Any) -> list[float]:
    """Every number in ``text``, in order. ``1,000`` is one thousand; ``60%`` is 60; ``−3`` is -3."""
    found = []
    for m in _NUMBER.finditer("" if text is None else str(text)):
        raw = m.group(0).replace(",", "").replace("−", "-")
        try:
            found.append(float(raw))
        except ValueError:
            continue
    return found


_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> tuple[str, int]:
    """``text`` as UTF-8 can hold it, and how many characters were escaped: a lone surrogate (what a
    server's ``\\ud800`` JSON escape or undecodable bytes read with ``surrogateescape`` become) is
    written out as the six characters ``\\ud800``, so no information is lost and the row can be stored."""
    if text.isascii():
        return text, 0
    return _SURROGATE.subn(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable_value(value: Any) -> tuple[Any, int]:
    """:func:`storable` applied to every string (keys too) inside lists and dicts."""
    if isinstance(value, str):
        return storable(value)
    if _first_surrogate(value) is None:
        return value, 0
    if isinstance(value, (list, tuple)):
        pairs = [storable_value(v) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            (k2, a), (v2, b) = storable_value(k), storable_value(v)
            out[k2] = v2
            total += a + b
        return out, total
    return value, 0


def is_storable(value: Any) -> bool:
    """True when no string inside ``value`` holds a lone surrogate (the fast check before :func:`storable_value`)."""
    if value.__class__ is str:
        return value.isascii() or _SURROGATE.search(value) is None
    return _first_surrogate(value) is None


def unstorable(value: Any) -> str | None:
    """Why ``value`` (text, or lists and dicts of it) cannot be stored as UTF-8 text, or None."""
    found = _first_surrogate(value)
    return None if found is None else f"holds a lone surrogate (U+{ord(found):04X}), which is not valid text"


def _first_surrogate(value: Any) -> str | None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if not v.isascii():
                m = _SURROGATE.search(v)
                if m:
                    return m.group()
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return None


def depth_of(value: Any, limit: int) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar is 0), counting no further than ``limit + 1``
    (iterative: a value nested 100,000 deep is measured without recursion)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, tuple, dict)):
            d += 1
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((x, d) for x in (v.values() if isinstance(v, dict) else v))
    return deepest
