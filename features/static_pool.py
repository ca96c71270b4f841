"""The static embedding model's pooling kernel (:func:`features.static_embeddings.pool`), apart so
that numba is imported only when a text is first embedded."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def pool_rows(table: np.ndarray, flat: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
    """``out[t]`` = the unit-length mean of the rows ``table[flat[offsets[t]:offsets[t + 1]]]``; a
    text without tokens keeps its zero row. ``out`` starts at zero."""
    dim = table.shape[1]
    for t in range(offsets.shape[0] - 1):
        begin, end = offsets[t], offsets[t + 1]
        if end == begin:
            continue
        for i in range(begin, end):
            row = table[flat[i]]
            for j in range(dim):
                out[t, j] += row[j]
        scale = 1.0 / (end - begin)
        norm = 0.0
        for j in range(dim):
            out[t, j] *= scale
            norm += out[t, j] * out[t, j]
        norm = max(np.sqrt(norm), 1e-12)
        for j in range(dim):
            out[t, j] /= norm
