"""How long to wait before the next attempt after a failure.

The numbers follow client-go's reflector: 0.8 s initial, doubling, capped at 30 s, forgotten
after 2 minutes without a failure. client-go uses full jitter (anywhere from 0 to the bound);
we draw from the upper half of the bound instead, so that two failures in a row are always
at least 0.4 s apart and a flapping server can never make the informer spin, while many
clients restarting together still spread out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter. All durations in seconds."""

    initial: float = 0.8
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap or self.factor < 1 or self.reset_after < 0:
            raise ValueError(f"backoff {self} needs 0 < initial <= cap, factor >= 1")

    def delay(self, failures: int, jitter: float) -> float:
        """The wait after the ``failures``-th failure in a row; ``jitter`` is in [0, 1)."""
        if failures <= 0:
            return 0.0
        bound = min(self.cap, self.initial * self.factor ** min(failures - 1, 64))
        return bound * (0.5 + 0.5 * jitter)
