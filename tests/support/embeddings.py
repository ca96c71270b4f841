"""A swapped-in embedding model for the tests of the model interface: a bag of hashed words.

Deterministic, instant and small (not a model anyone would search with); it shows that any object
with ``name``, ``dim`` and ``embed`` plugs in where the built-in all-MiniLM-L6-v2 goes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashedWords:
    name = "hashed-words-384"
    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def make_hashed_words() -> HashedWords:
    return HashedWords()


class NoEmbed:
    name = "broken"
    dim = 3
