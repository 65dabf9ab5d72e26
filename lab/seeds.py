"""The one seed policy: every call's seed is derived from its experiment's seed and the call's place.

The place is what makes the call distinct (input id and repeat in an experiment; turn and attempt
in a conversation; round and role in a critique). With no seed given, the experiment draws one
at random and records it, so any sample can be redone.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from .checks import check_int


def derive_seed(seed: int, *parts: object) -> int:
    """A per-call seed from the experiment seed and the call's place (input, repeat)."""
    h = hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).hexdigest()
    return int(h[:8], 16) % (2**31 - 1)


def base_seed(seed: int | None) -> int:
    """The user's seed, or a random one (recorded in every call's params so it can be replayed)."""
    if seed is None:
        return random.SystemRandom().randrange(2**31 - 1)
    return check_int("seed", seed, 0)


def seeded(params: dict[str, Any], seed: int, *parts: object) -> tuple[dict[str, Any], int]:
    s = derive_seed(seed, *parts)
    return {**params, "seed": s}, s
