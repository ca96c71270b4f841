"""A static embedding model distilled from the shipped all-MiniLM-L6-v2 (the Model2Vec method,
Tulkens & van Dongen): every WordPiece token of its vocabulary (30,522) goes through the int8 ONNX
network once, alone between [CLS] and [SEP], mean-pooled as the model pools; each token's vector
is weighted by a Zipf estimate of its frequency from its vocabulary rank (SIF, a / (a + p(rank)),
a = 1e-4, as Model2Vec does); a text's vector is the mean of its tokens' vectors, L2-normalised.
384 dimensions, like MiniLM, so the store needs no migration; its vectors carry their own model name.

The table is derived data: distilled on first use (~45 s on one core; a progress line per 20 %)
and cached in ``<cache_dir>/minilm-l6-v2-static-<key>.npy`` (float16, 23 MB), ``key`` a checksum
of the source network, its tokenizer and :data:`RECIPE`, so another source model rebuilds it.
Written to a temporary file and renamed: processes distilling at once each write a whole file.
Nothing is downloaded (numpy + onnxruntime + tokenizers, no PyTorch).

Embedding is tokenizing and a mean of table rows: thousands of texts/s on one core, where the
network runs ~45 headline-and-lead texts/s. Its neighbours agree only in part with MiniLM's
(``marketpipe bench news`` measures the overlap): it is a bag of token vectors, word order and
context are lost.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigurationError

STATIC_MINILM = "minilm-l6-v2-static"
RECIPE = "mean-pool-cls-sep/sif-1e-4/v1"
SIF_COEFFICIENT = 1e-4
CLS_ID, SEP_ID = 101, 102


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/marketpipe`` or ``~/.cache/marketpipe`` (read when called, not at import)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marketpipe"


def distill_token_vectors(
    network: Callable[[np.ndarray], np.ndarray],
    vocab_size: int,
    *,
    batch_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(vocab_size, dim) float32: each token id alone between [CLS] and [SEP] through ``network``
    (ids (n, 3) -> hidden (n, 3, dim)), mean-pooled over the three positions (all real tokens)."""
    rows: list[np.ndarray] = []
    for start in range(0, vocab_size, batch_size):
        ids = np.arange(start, min(vocab_size, start + batch_size), dtype=np.int64)
        sequences = np.stack([np.full_like(ids, CLS_ID), ids, np.full_like(ids, SEP_ID)], axis=1)
        rows.append(np.asarray(network(sequences), dtype=np.float32).mean(axis=1))
        if progress is not None:
            progress(start + len(ids), vocab_size)
    return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def sif_weights(vocab_size: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """a / (a + p) per token, p its Zipf probability from its rank (token id: WordPiece vocabularies
    list words roughly by frequency): frequent tokens weigh little, rare ones about 1."""
    inverse_rank = 1.0 / np.arange(2, vocab_size + 2, dtype=np.float64)
    probability = inverse_rank / inverse_rank.sum()
    return (coefficient / (coefficient + probability)).astype(np.float32)


def pool(table: np.ndarray, token_ids: Sequence[Sequence[int]], chunk_texts: int = 256) -> np.ndarray:
    """Mean of each text's token rows, L2-normalised (a text without tokens: a zero row). Texts go
    ``chunk_texts`` at a time: the gathered rows of a whole batch (tokens x 384 floats) would not
    stay in cache."""
    out = np.zeros((len(token_ids), table.shape[1]), dtype=np.float32)
    for begin in range(0, len(token_ids), chunk_texts):
        chunk = token_ids[begin : begin + chunk_texts]
        lengths = np.array([len(t) for t in chunk], dtype=np.int64)
        filled = np.flatnonzero(lengths)
        if not filled.size:
            continue
        flat = np.concatenate([np.asarray(chunk[int(k)], dtype=np.int64) for k in filled])
        starts = np.concatenate([[0], np.cumsum(lengths[filled])[:-1]])
        sums = np.add.reduceat(table[flat].astype(np.float32, copy=False), starts, axis=0)
        out[begin + filled] = sums / lengths[filled, None]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _checksum(*paths: Path) -> str:
    digest = hashlib.sha256(RECIPE.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class StaticMiniLM:
    """The distilled table behind :class:`features.embeddings.EmbeddingModel`; loads (or distills)
    on the first :meth:`embed`, thread-safe. ``threads``: onnxruntime threads of the distillation."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        threads: int = 1,
        max_tokens: int = 256,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
    ) -> None:
        if threads < 0 or max_tokens < 1:
            raise ConfigurationError(f"StaticMiniLM: threads {threads} (>= 0), max_tokens {max_tokens} (>= 1)")
        self.cache_dir = cache_dir
        self.threads = threads
        self.max_tokens = max_tokens
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.cache_file: Path | None = None  # where the table was read from or written to

    @property
    def name(self) -> str:
        return STATIC_MINILM

    @property
    def dim(self) -> int:
        return 384

    def _load(self) -> None:
        if self._table is not None:
            return
        with self._lock:
            if self._table is not None:
                return
            from tokenizers import Tokenizer

            from features.embeddings import minilm_files

            model, vocab = minilm_files(self._model_path, self._tokenizer_path)
            tokenizer = Tokenizer.from_file(str(vocab))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=self.max_tokens)
            path = (self.cache_dir or default_cache_dir()) / f"{STATIC_MINILM}-{_checksum(model, vocab)}.npy"
            if path.is_file():
                table = np.load(path).astype(np.float32)
            else:
                table = self._distill(model, tokenizer.get_vocab_size())
                _write_atomically(path, table.astype(np.float16))
            self.cache_file = path
            self._tokenizer = tokenizer
            self._table = table

    def _distill(self, model: Path, vocab_size: int) -> np.ndarray:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        inputs = {i.name for i in session.get_inputs()}

        def network(ids: np.ndarray) -> np.ndarray:
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if "token_type_ids" in inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            return np.asarray(session.run(None, feeds)[0])

        shown = [0]

        def progress(done: int, total: int) -> None:
            if done * 5 // total > shown[0] or done == total:
                shown[0] = done * 5 // total
                print(f"distilling {STATIC_MINILM}: {done:,}/{total:,} tokens", file=sys.stderr, flush=True)

        raw = distill_token_vectors(network, vocab_size, progress=progress)
        return raw * sif_weights(vocab_size)[:, None]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from features.embeddings import _checked_texts

        listed = _checked_texts(texts)
        if not listed:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        assert self._table is not None
        encodings = self._tokenizer.encode_batch(listed, add_special_tokens=False)
        return pool(self._table, [e.ids for e in encodings])


def _write_atomically(path: Path, table: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with partial.open("wb") as handle:
            np.save(handle, table)
        partial.replace(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot cache the distilled embedding table at {path}: {exc}; set embeddings.cache_dir to a "
            "writable directory"
        ) from exc
