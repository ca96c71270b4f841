"""Deterministic pseudo-random numbers addressed by key, for events that live on a time grid.

News counts, Reddit posts and similar are looked up by (slot, item) rather than drawn from a
stream, so any window of time can be produced on its own and always looks the same.
"""

from __future__ import annotations

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash_u64(keys: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of (key ^ salt), vectorized; wrap-around arithmetic is intended."""
    with np.errstate(over="ignore"):
        z = (np.asarray(keys, dtype=np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & _MASK


def hash_uniform(keys: np.ndarray, salt: int) -> np.ndarray:
    """Uniform floats in [0, 1) from `hash_u64`."""
    return (hash_u64(keys, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
