"""A static embedding model distilled from the shipped all-MiniLM-L6-v2, then fitted to it
(``minilm-l6-v2-static-fit``): the default of ``embeddings.model``, fast enough for backfills.

Distillation (the Model2Vec method, Tulkens & van Dongen): every WordPiece token of MiniLM's
vocabulary (30,522) goes through the int8 ONNX network once, alone between [CLS] and [SEP],
mean-pooled as the model pools. A text's vector is then the weighted mean of its tokens' rows,
projected and L2-normalised: a tokenizer pass and a gather, thousands of texts per second on one
core, where the network runs ~90 headline-and-lead texts a second.

The fit (Tokenlearn's idea, reduced to 30,522 + 384 x 384 numbers): one weight per token and a
linear map of the pooled vector, learned so the static vector of a text points where MiniLM's does
(cosine loss, Adam), on ~9,000 passages of real English text (the Wikipedia excerpt gensim ships in
its test data), MiniLM's own vectors of them the targets. The weights start from SIF's frequency
weights (a / (a + p(rank)), a = 1e-4) and the map from the identity. :func:`fit_static` is the
method, ``python -m bench.static_fit`` the run that made the shipped fit
(``features/data/minilm-l6-v2-static-fit.npz``, 0.6 MB; its report in the file), so the fit is
reproducible and nothing is downloaded. Measured on held-out passages: cosine to MiniLM's vector
0.26 before the fit, 0.82 after; on real news with human similarity ratings (Lee et al. 2005, see
``bench/news.py``) Pearson 0.67 against MiniLM's own 0.66 (0.39 before the fit). Word order and
context are still lost (a bag of token vectors): on short texts whose words alone do not decide
the meaning it can differ from MiniLM; ``embeddings.model: all-minilm-l6-v2-int8`` selects MiniLM.

The distilled table is derived data: built by ``make install`` (``python -m
features.static_embeddings``, :func:`prepare_table`) or on first use (~30-45 s of CPU; a progress
line per 20 %) and cached in ``<cache_dir>/minilm-l6-v2-distilled-<key>.npy`` (float16, 23 MB), ``key`` a
checksum of the source network, its tokenizer and :data:`RECIPE`; processes that want it at once
wait for one build (a file lock), and a file is written whole and renamed. The shipped fit names
the checksum it was made for: another source network is refused with how to refit. Nothing is
downloaded (numpy + onnxruntime + tokenizers, no PyTorch).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigurationError

STATIC_MINILM = "minilm-l6-v2-static-fit"
RECIPE = "mean-pool-cls-sep/raw/v2"  # how the distilled table is made (part of its cache key)
SIF_COEFFICIENT = 1e-4
CLS_ID, SEP_ID = 101, 102
FIT_FILE = Path(__file__).with_name("data") / f"{STATIC_MINILM}.npz"


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


def pool(table: np.ndarray, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean of each text's token rows, L2-normalised (a text without tokens: a zero row). The rows
    are summed where they lie in the table (:func:`features.static_pool.pool_rows`): gathering them
    first (tokens x 384 floats, then ``np.add.reduceat``) took ~0.09 s of CPU for the news bench's
    2,019 stories, 0.016 s this way; the sums differ by float rounding only (~1e-7)."""
    lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
    offsets = np.zeros(len(token_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((i for t in token_ids for i in t), dtype=np.int64, count=int(offsets[-1]))
    out = np.zeros((len(token_ids), table.shape[1]), dtype=np.float32)
    if flat.size and (flat.min() < 0 or flat.max() >= table.shape[0]):
        raise ConfigurationError(
            f"token ids {int(flat.min())}..{int(flat.max())} outside the static table's {table.shape[0]} rows; "
            "the tokenizer and the table come from different models"
        )
    from features.static_pool import pool_rows  # numba, compiled once (its cache), imported when first used

    pool_rows(np.ascontiguousarray(table, dtype=np.float32), flat, offsets, out)
    return out


# ---- the fit ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticFit:
    """A token weight per vocabulary entry and a (dim, dim) map of the pooled vector; ``source`` is
    the checksum of the distilled table it was fitted on, ``report`` how the fit went."""

    weights: np.ndarray
    projection: np.ndarray
    source: str
    report: Mapping[str, float | int | str] = field(default_factory=dict)

    def table(self, distilled: np.ndarray) -> np.ndarray:
        """The rows a text's tokens are pooled from: each distilled row weighted, then mapped (the
        map is linear, so mapping each row equals mapping the mean)."""
        if distilled.shape != (len(self.weights), self.projection.shape[0]):
            raise ConfigurationError(
                f"the static model's fit is for a {len(self.weights)} x {self.projection.shape[0]} table, "
                f"the distilled one is {distilled.shape[0]} x {distilled.shape[1]}"
            )
        weighted = distilled.astype(np.float32) * self.weights[:, None]
        return np.asarray(weighted @ self.projection, dtype=np.float32)


def fit_static(
    distilled: np.ndarray,
    token_ids: Sequence[Sequence[int]],
    targets: np.ndarray,
    *,
    epochs: int = 6,
    learning_rate: float = 0.01,
    batch_texts: int = 256,
    holdout: float = 0.1,
    anchor: float = 1e-4,
    seed: int = 0,
    source: str = "",
    progress: Callable[[int, float], None] | None = None,
) -> StaticFit:
    """Token weights and a map so that a text's pooled static vector points along ``targets`` (the
    reference model's unit vectors of the same texts): Adam on 1 - cosine over mini-batches of
    ``batch_texts`` texts, ``epochs`` passes; weights start at :func:`sif_weights`, stay >= 0 and
    are pulled to the start by ``anchor`` (L2); the map starts at the identity and learns at a
    tenth of the rate. The last ``holdout`` share of the texts is kept out and measured before and
    after (``report``). Deterministic for a ``seed``. ``progress(epoch, holdout_cosine)``."""
    keep = [i for i, ids in enumerate(token_ids) if len(ids)]
    if len(keep) < 10 or len(targets) != len(token_ids):
        raise ValueError(f"fit_static: {len(keep)} texts with tokens and {len(targets)} targets for {len(token_ids)}")
    vocab, dim = distilled.shape
    raw = distilled.astype(np.float32)
    ids = [np.asarray(token_ids[i], dtype=np.int64) for i in keep]
    wanted = np.asarray(targets, dtype=np.float32)[keep]
    cut = len(ids) - max(1, int(holdout * len(ids)))
    start_weights = sif_weights(vocab).astype(np.float64)
    weights, projection = start_weights.copy(), np.eye(dim)
    moments: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "w": (np.zeros(vocab), np.zeros(vocab)),
        "m": (np.zeros((dim, dim)), np.zeros((dim, dim))),
    }
    beta1, beta2 = 0.9, 0.999

    def pooled(batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat = np.concatenate(batch)
        lengths = np.array([len(b) for b in batch], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = raw[flat] * weights[flat, None]
        return flat, lengths, np.add.reduceat(rows, starts, axis=0) / lengths[:, None]

    def cosine(first: int, last: int) -> float:
        _, _, mean = pooled(ids[first:last])
        mapped = mean @ projection
        mapped /= np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
        return float((mapped * wanted[first:last]).sum(axis=1).mean())

    def adam(key: str, value: np.ndarray, grad: np.ndarray, rate: float, step: int) -> np.ndarray:
        first, second = moments[key]
        first *= beta1
        first += (1 - beta1) * grad
        second *= beta2
        second += (1 - beta2) * grad * grad
        return value - rate * (first / (1 - beta1**step)) / (np.sqrt(second / (1 - beta2**step)) + 1e-8)

    before = cosine(cut, len(ids))
    rng = np.random.default_rng(seed)
    step = 0
    for epoch in range(epochs):
        order = rng.permutation(cut)
        for begin in range(0, cut, batch_texts):
            picked = order[begin : begin + batch_texts]
            flat, lengths, mean = pooled([ids[i] for i in picked])
            mapped = mean @ projection
            norms = np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)
            unit = mapped / norms
            target = wanted[picked]
            agreement = (unit * target).sum(axis=1, keepdims=True)
            grad_mapped = -(target - agreement * unit) / norms / len(picked)  # d(1 - cos) / d mapped
            grad_projection = mean.T @ grad_mapped
            grad_mean = grad_mapped @ projection.T
            per_token = (raw[flat] * np.repeat(grad_mean / lengths[:, None], lengths, axis=0)).sum(axis=1)
            grad_weights = np.bincount(flat, weights=per_token, minlength=vocab) + anchor * (weights - start_weights)
            step += 1
            weights = np.maximum(adam("w", weights, grad_weights, learning_rate, step), 0.0)
            projection = adam("m", projection, grad_projection, learning_rate / 10, step)
        if progress is not None:
            progress(epoch + 1, cosine(cut, len(ids)))
    report: dict[str, float | int | str] = {
        "texts": cut,
        "holdout_texts": len(ids) - cut,
        "epochs": epochs,
        "holdout_cosine_before": round(before, 4),
        "holdout_cosine_after": round(cosine(cut, len(ids)), 4),
    }
    return StaticFit(weights.astype(np.float32), projection.astype(np.float32), source, report)


def save_fit(fit: StaticFit, path: Path) -> None:
    report = np.array(sorted((k, str(v)) for k, v in fit.report.items()), dtype=str).reshape(-1, 2)
    with path.open("wb") as handle:
        np.savez_compressed(
            handle, weights=fit.weights, projection=fit.projection, source=np.array(fit.source), report=report
        )


def load_fit(path: Path = FIT_FILE) -> StaticFit:
    try:
        with np.load(path, allow_pickle=False) as data:
            report = {str(k): str(v) for k, v in data["report"]}
            return StaticFit(data["weights"], data["projection"], str(data["source"]), report)
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"the static embedding model's fit {path} cannot be read ({exc}); reinstall marketpipe, or refit "
            "it with `python -m bench.static_fit`"
        ) from exc


# ---- the model ----------------------------------------------------------------------------------------


def _checksum(*paths: Path) -> str:
    digest = hashlib.sha256(RECIPE.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class StaticMiniLM:
    """The fitted static model behind :class:`features.embeddings.EmbeddingModel`; loads (or
    distills) on the first :meth:`embed`, thread-safe. ``threads``: onnxruntime threads of the
    distillation (0: one per core). ``fit``: the shipped :data:`FIT_FILE` unless given."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        threads: int = 0,
        max_tokens: int = 256,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        fit: StaticFit | None = None,
    ) -> None:
        if threads < 0 or max_tokens < 1:
            raise ConfigurationError(f"StaticMiniLM: threads {threads} (>= 0), max_tokens {max_tokens} (>= 1)")
        self.cache_dir = cache_dir
        self.threads = threads
        self.max_tokens = max_tokens
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._fit = fit
        self._table: np.ndarray | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.cache_file: Path | None = None  # where the distilled table was read from or written to

    @property
    def name(self) -> str:
        return STATIC_MINILM

    @property
    def dim(self) -> int:
        return 384

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as :meth:`embed` pools them (no [CLS]/[SEP], cut at ``max_tokens``)."""
        self._load_tokenizer()
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def distilled(self) -> tuple[np.ndarray, str]:
        """The distilled table (read from the cache or built) and its checksum."""
        from features.embeddings import minilm_files

        model, vocab = minilm_files(self._model_path, self._tokenizer_path)
        source = _checksum(model, vocab)
        cache = self.cache_dir or default_cache_dir()
        path = cache / f"minilm-l6-v2-distilled-{source}.npy"
        with _build_lock(cache, path.name):  # another process building it: wait, then read its file
            if path.is_file():
                table = np.load(path).astype(np.float32)
            else:
                self._load_tokenizer()
                stored = self._distill(model, self._tokenizer.get_vocab_size()).astype(np.float16)
                _write_atomically(path, stored)
                table = stored.astype(np.float32)  # as a later load reads it
        self.cache_file = path
        return table, source

    def _load_tokenizer(self) -> None:
        if self._tokenizer is not None:
            return
        from tokenizers import Tokenizer

        from features.embeddings import minilm_files

        tokenizer = Tokenizer.from_file(str(minilm_files(self._model_path, self._tokenizer_path)[1]))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tokenizer

    def _load(self) -> None:
        if self._table is not None:
            return
        with self._lock:
            if self._table is not None:
                return
            distilled, source = self.distilled()
            fit = self._fit or load_fit()
            if fit.source != source:
                raise ConfigurationError(
                    f"the static embedding model's fit was made for another MiniLM build (table {fit.source}, "
                    f"installed {source}); refit it with `python -m bench.static_fit`, or set embeddings.model "
                    "to all-minilm-l6-v2-int8"
                )
            self._table = fit.table(distilled)

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

        return distill_token_vectors(network, vocab_size, progress=progress)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from features.embeddings import _checked_texts

        listed = _checked_texts(texts)
        if not listed:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load()
        assert self._table is not None
        return pool(self._table, self.tokenize(listed))


@contextlib.contextmanager
def _build_lock(directory: Path, name: str) -> Iterator[None]:
    """An exclusive lock file beside the cached table (fcntl), so concurrent first uses build once."""
    import fcntl

    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = (directory / f"{name}.lock").open("a")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot use {directory} for the distilled embedding table: {exc}; set embeddings.cache_dir to a "
            "writable directory"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def prepare_table(cache_dir: Path | None = None) -> tuple[Path, bool]:
    """Build the distilled table into ``cache_dir`` unless it is there already (``make install``
    does this, so a host's first news run does not pay the ~30-45 s of CPU); returns its path and
    whether it was built now."""
    model = StaticMiniLM(cache_dir)
    cache = cache_dir or default_cache_dir()
    before = {p.name for p in cache.glob("minilm-l6-v2-distilled-*.npy")} if cache.is_dir() else set()
    model.distilled()
    assert model.cache_file is not None
    return model.cache_file, model.cache_file.name not in before


def main() -> int:
    """``python -m features.static_embeddings``: prepare the table where ``embeddings.cache_dir``
    says (nothing to do when ``embeddings.model`` is another model)."""
    from core.settings import load_settings

    embeddings = load_settings().embeddings
    if embeddings.model != STATIC_MINILM or not embeddings.enabled:
        print(f"embeddings.model is {embeddings.model!r} (enabled: {embeddings.enabled}): no static table needed")
        return 0
    path, built = prepare_table(embeddings.cache_dir)
    print(f"{STATIC_MINILM}: distilled table {'built' if built else 'already'} at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
