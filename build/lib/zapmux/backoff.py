"""Retry timing: exponential backoff with full jitter, as a small policy object."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(n)`` is uniform in [0, min(cap, base·2ⁿ⁻¹)] for the n-th retry (n ≥ 1)."""

    base: float = 1.0
    cap: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(max(attempt - 1, 0), 30))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0, self.ceiling(attempt))
