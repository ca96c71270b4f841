"""Frame-level stream faults as pure functions of (seed, frame number, frame): reruns see the same.

Tick faults that change which events exist (late trades, corrections, cancels) live in the
timeline; these only disturb delivery: a message repeated in the next frame, two neighbours
swapped, a frame cut in half so it no longer parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sandbox.prices import symbol_hash
from sandbox.textgen import hash_uniform


def drawn(n: int, fraction: float, *salt: object) -> np.ndarray:
    """Which of n items a fault hits: about `fraction` of them, the same for the same salt."""
    if fraction <= 0 or n == 0:
        return np.zeros(n, dtype=bool)
    key = symbol_hash("|".join(str(s) for s in salt))
    return hash_uniform(np.arange(n, dtype=np.uint64), key) < fraction


@dataclass(frozen=True)
class DeliveryFaults:
    seed: int = 0
    duplicate: float = 0.0
    reorder: float = 0.0
    malformed: float = 0.0

    def disturb(self, frame_no: int, messages: list[Any]) -> tuple[list[Any], list[Any]]:
        """(messages to send now, copies to prepend to the next frame) for one data frame."""
        n = len(messages)
        out = list(messages)
        if self.reorder > 0 and n > 1:
            swap = drawn(n - 1, self.reorder, self.seed, frame_no, "reorder")
            i = 0
            while i < n - 1:
                if swap[i]:
                    out[i], out[i + 1] = out[i + 1], out[i]
                    i += 2
                else:
                    i += 1
        again: list[Any] = []
        if self.duplicate > 0 and n:
            picked = np.flatnonzero(drawn(n, self.duplicate, self.seed, frame_no, "duplicate"))
            again = [dict(out[i]) if isinstance(out[i], dict) else out[i] for i in picked.tolist()]
        return out, again

    def corrupt(self, frame_no: int, payload: str | bytes) -> str | bytes | None:
        """The payload cut in half when this frame is drawn as malformed, else None."""
        if not drawn(1, self.malformed, self.seed, frame_no, "malformed")[0]:
            return None
        return payload[: max(1, len(payload) // 2)]
