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
