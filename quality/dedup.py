"""Cross-source story dedup (pure): canonical URLs, then near-duplicate text inside a time window.

Two items are one story when their canonical URLs agree (tracking parameters, mobile and AMP
hosts, fragments and trailing slashes removed), or when the estimated Jaccard similarity of their
text's word shingles (headline + lead, lower-cased, punctuation dropped) is at least
``threshold`` and they were published within ``window_hours`` of the story's first item. The
Jaccard estimate is MinHash (``num_perm`` permutations of a 32-bit hash, as datasketch computes
it, vectorized over a batch's shingles); candidates come from an LSH banding index (``lsh_bands``
bands of ``lsh_rows`` values: two signatures are candidates when one band is equal, as datasketch's
``MinHashLSH`` finds them, without its per-item objects or its scipy import), then the estimate is
checked. Each item joins the most similar story among its candidates (the earliest known on a
tie), or founds one: its ``story_id`` is derived from its own (source, id), so a rerun over the
same items gives the same ids.

Measured against the sandbox's truth (tests/integration/news, ``marketpipe bench news``).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from core.errors import ConfigurationError

_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_FOLD_SHIFT = np.uint64(61)
_WORDS = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_TRACKING = re.compile(
    r"^(utm_[a-z]+|fbclid|gclid|dclid|mc_cid|mc_eid|ref|ref_src|src|cmpid|ncid|yptr|guccounter|soc_src|"
    r"soc_trk|ito|icid|campaign|share|amp)$",
    re.IGNORECASE,
)
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_AMP_SUFFIX = re.compile(r"/amp/?$")
_STOP_WORDS = frozenset({"update", "updated", "report", "breaking", "exclusive"})


@dataclass(frozen=True)
class DedupConfig:
    num_perm: int = 64
    threshold: float = 0.5  # estimated Jaccard similarity of two items of one story
    window_hours: float = 72.0
    shingle_words: int = 3
    lead_words: int = 30  # of the lead (summary or body) read after the headline: its first sentences
    seed: int = 1
    # LSH banding (bands x rows <= num_perm): datasketch's optimum for threshold 0.5 and 64
    # permutations with equal false positive/negative weights (its integration, done once);
    # change it with threshold or num_perm.
    lsh_bands: int = 14
    lsh_rows: int = 4


def canonical_url(url: str | None) -> str | None:
    """The URL an article has whatever the link that carried it: lower-case scheme and host,
    without www./m./mobile./amp. host prefixes, tracking parameters, fragment, a trailing /amp
    and a trailing slash. None for an empty or unparseable URL."""
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not parts.query and not parts.fragment and not host.startswith(_HOST_PREFIXES) and parts.scheme == "https":
        path = parts.path.rstrip("/") or "/"
        if not path.endswith("/amp"):
            return f"https://{host}{path}"
    if not host:
        return None
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix):
            host = host[len(prefix) :]
            break
    path = _AMP_SUFFIX.sub("", parts.path or "")
    path = path.rstrip("/") or "/"
    if not parts.query:  # what urlunsplit makes of a path (empty or from "/") without a query
        return f"https://{host}{path}"
    query = urlencode(
        sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k))
    )
    return urlunsplit(("https", host, path, query, ""))


def text_tokens(headline: str, lead: str, lead_words: int) -> list[str]:
    """Lower-case words of the headline and the first ``lead_words`` of the lead (findall of the
    whole lead is faster than stopping a finditer there: a match object per word costs more)."""
    head = [w for w in _WORDS.findall(headline.lower()) if w not in _STOP_WORDS]
    return head + _WORDS.findall(lead.lower())[:lead_words]


def shingle_hashes(tokens: list[str], k: int) -> np.ndarray:
    """32-bit hashes (CRC-32) of the k-word shingles of ``tokens`` (one shingle for fewer words)."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    if k == 1 or len(tokens) <= k:
        grams = {" ".join(tokens[:k])} if len(tokens) <= k else set(tokens)
    else:  # the k-grams as k shifted copies of the list zipped (one join per gram, no slices)
        grams = set(map(" ".join, zip(*(tokens[i:] for i in range(k)), strict=False)))
    return np.fromiter(map(zlib.crc32, map(str.encode, grams)), dtype=np.uint64, count=len(grams))


@dataclass(frozen=True)
class Permutations:
    """The ``num_perm`` universal hash permutations, drawn as datasketch draws them for ``seed``."""

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, num_perm: int, seed: int) -> Permutations:
        gen = np.random.RandomState(seed)
        a = gen.randint(1, _MERSENNE, size=num_perm, dtype=np.uint64)
        b = gen.randint(0, _MERSENNE, size=num_perm, dtype=np.uint64)
        return cls(a, b)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        """MinHash signature (uint32, one per permutation); all-max for an empty text."""
        if hashes.size == 0:
            return np.full(self.a.size, _MAX_HASH, dtype=np.uint32)
        with np.errstate(over="ignore"):
            phv = (hashes[None, :] * self.a[:, None] + self.b[:, None]) % _MERSENNE & _MAX_HASH
        return phv.min(axis=1).astype(np.uint32)

    def signatures(self, texts: list[np.ndarray]) -> np.ndarray:
        """:meth:`signature` of each of ``texts`` (shingle hashes), one row each, in one pass over
        the batch's shingles (the same values: the permutation is elementwise)."""
        out = np.full((len(texts), self.a.size), _MAX_HASH, dtype=np.uint32)
        filled = [i for i, h in enumerate(texts) if h.size]
        if not filled:
            return out
        hashes = np.concatenate([texts[i] for i in filled])
        starts = np.cumsum([0] + [texts[i].size for i in filled[:-1]])
        mins = np.empty((len(filled), self.a.size), dtype=np.uint64)
        x, r = np.empty_like(hashes), np.empty_like(hashes)
        wrapped = np.empty(hashes.size, dtype=bool)
        # One permutation at a time over the batch's shingles (cache-sized vectors, no 64-row
        # temporaries), x mod (2^61 - 1) by folding instead of a 64-bit division: with x = q 2^61 + l,
        # x = q + l (mod 2^61 - 1) and q + l <= 2^61 + 6; only the low 32 bits are kept, and those
        # of q + l - (2^61 - 1) are those of q + l + 1, so a wrapped value adds 1. Same values as %.
        with np.errstate(over="ignore"):
            for p in range(self.a.size):
                np.multiply(hashes, self.a[p], out=x)
                x += self.b[p]
                np.bitwise_and(x, _MERSENNE, out=r)
                x >>= _FOLD_SHIFT
                r += x
                np.greater_equal(r, _MERSENNE, out=wrapped)
                r += wrapped
                r &= _MAX_HASH
                mins[:, p] = np.minimum.reduceat(r, starts)
        out[filled] = mins
        return out


def story_id_of(source: str, item_id: str) -> int:
    """A story's id: a positive 63-bit number derived from its founding item (stable across runs)."""
    digest = hashlib.blake2b(f"{source}\x1f{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class StoryIndex:
    """Stories already known (stored, or founded earlier in this batch) to match new items against."""

    config: DedupConfig = field(default_factory=DedupConfig)
    perms: Permutations | None = None
    _bands: list[dict[bytes, list[int]]] = field(default_factory=list)  # band value -> entries, per band
    _signatures: dict[int, np.ndarray] = field(default_factory=dict)
    # entry -> (story_id, published_ns, symbols)
    _meta: dict[int, tuple[int, int, frozenset[str]]] = field(default_factory=dict)
    _urls: dict[str, int] = field(default_factory=dict)  # canonical url -> entry
    _items: dict[tuple[str, str], int] = field(default_factory=dict)  # (source, id) -> story_id

    def __post_init__(self) -> None:
        self.perms = self.perms or Permutations.of(self.config.num_perm, self.config.seed)
        bands, rows = self.config.lsh_bands, self.config.lsh_rows
        if bands < 1 or rows < 1 or bands * rows > self.config.num_perm:
            raise ConfigurationError(
                f"dedup LSH banding {bands} bands x {rows} rows does not fit {self.config.num_perm} permutations; "
                "give bands, rows >= 1 with bands x rows <= num_perm"
            )
        self._bands = [{} for _ in range(bands)]

    def _shingles(self, headline: str, lead: str) -> np.ndarray:
        return shingle_hashes(text_tokens(headline, lead, self.config.lead_words), self.config.shingle_words)

    def signature(self, headline: str, lead: str) -> np.ndarray:
        assert self.perms is not None
        return self.perms.signature(self._shingles(headline, lead))

    def signatures(self, texts: Iterable[tuple[str, str]]) -> list[np.ndarray]:
        """:meth:`signature` of each (headline, lead), computed for the batch at once."""
        assert self.perms is not None
        return list(self.perms.signatures([self._shingles(h, lead) for h, lead in texts]))

    def _keys(self, signature: np.ndarray) -> list[bytes] | None:
        """The signature's band keys, None for no text (no candidates, and a candidate of none)."""
        return self._band_keys(signature) if _signed(signature) else None

    def _band_keys(self, signature: np.ndarray) -> list[bytes]:
        width = 4 * self.config.lsh_rows  # bytes of a band: lsh_rows uint32 values
        data = np.ascontiguousarray(signature, dtype=np.uint32).tobytes()
        return [data[b * width : (b + 1) * width] for b in range(len(self._bands))]

    def add(
        self,
        source: str,
        item_id: str,
        story_id: int,
        published_ns: int,
        url: str | None,
        signature: np.ndarray,
        symbols: Iterable[str] = (),
    ) -> None:
        """Know an item of ``story_id`` (a stored one, or one just assigned)."""
        keys = self._keys(signature)
        self._add(source, item_id, story_id, published_ns, url, signature, frozenset(symbols), keys)

    def _add(
        self,
        source: str,
        item_id: str,
        story_id: int,
        published_ns: int,
        url: str | None,
        signature: np.ndarray,
        symbols: frozenset[str],
        keys: list[bytes] | None,
    ) -> None:
        entry = len(self._meta)
        self._meta[entry] = (story_id, published_ns, symbols)
        self._items[(source, item_id)] = story_id
        if url:
            self._urls.setdefault(url, entry)
        if keys is not None:
            self._signatures[entry] = signature
            for table, key in zip(self._bands, keys, strict=True):
                table.setdefault(key, []).append(entry)

    def known(self, source: str, item_id: str) -> int | None:
        return self._items.get((source, item_id))

    def match(
        self, published_ns: int, url: str | None, signature: np.ndarray, symbols: Iterable[str] = ()
    ) -> int | None:
        """The story an item belongs to, or None: same canonical URL within the window, else the
        most similar LSH candidate at or above the threshold within the window that shares a
        symbol with the item (when both name symbols: the same wording about another company is
        another story)."""
        keys = self._keys(signature)
        return self._match(published_ns, url, signature, frozenset(symbols), keys)

    def _match(
        self, published_ns: int, url: str | None, signature: np.ndarray, about: frozenset[str], keys: list[bytes] | None
    ) -> int | None:
        window = int(self.config.window_hours * 3600 * 1e9)
        if url and url in self._urls:
            story, seen, _ = self._meta[self._urls[url]]
            if abs(published_ns - seen) <= window:
                return story
        if keys is None:
            return None
        best: tuple[float, int] | None = None
        candidates: set[int] = set()
        for table, key in zip(self._bands, keys, strict=True):
            found = table.get(key)
            if found:
                candidates.update(found)
        size = signature.size
        for entry in sorted(candidates):
            story, seen, named = self._meta[entry]
            if abs(published_ns - seen) > window or (about and named and not about & named):
                continue
            similarity = np.count_nonzero(self._signatures[entry] == signature) / size
            if similarity >= self.config.threshold and (best is None or similarity > best[0]):
                best = (similarity, story)
        return best[1] if best else None

    def assign(
        self,
        source: str,
        item_id: str,
        published_ns: int,
        url: str | None,
        signature: np.ndarray,
        symbols: Iterable[str] = (),
    ) -> tuple[int, bool]:
        """(story_id, founded): the item's known story, a matching one, or a new one it founds."""
        keys = self._keys(signature)
        return self._assign(source, item_id, published_ns, url, signature, frozenset(symbols), keys)

    def assign_many(
        self,
        sources: Sequence[str],
        item_ids: Sequence[str],
        published_ns: Sequence[int],
        urls: Sequence[str | None],
        signatures: Sequence[np.ndarray],
        symbols: Sequence[Iterable[str]],
    ) -> list[tuple[int, bool]]:
        """:meth:`assign` of each item in order (each sees the ones before it), the band keys of
        the batch's signatures cut from one buffer."""
        keys = self._batch_band_keys(signatures)
        return [
            self._assign(s, i, t, u, sig, frozenset(syms), k)
            for s, i, t, u, sig, syms, k in zip(
                sources, item_ids, published_ns, urls, signatures, symbols, keys, strict=True
            )
        ]

    def _assign(
        self,
        source: str,
        item_id: str,
        published_ns: int,
        url: str | None,
        signature: np.ndarray,
        about: frozenset[str],
        keys: list[bytes] | None,
    ) -> tuple[int, bool]:
        story = self._items.get((source, item_id))
        founded = False
        if story is None:
            story = self._match(published_ns, url, signature, about, keys)
        if story is None:
            story, founded = story_id_of(source, item_id), True
        self._add(source, item_id, story, published_ns, url, signature, about, keys)
        return story, founded

    def _batch_band_keys(self, signatures: Sequence[np.ndarray]) -> list[list[bytes] | None]:
        """:meth:`_band_keys` of each signature (None for one that is empty or all-max: no text)."""
        num_perm = self.config.num_perm
        full = [i for i, sig in enumerate(signatures) if sig.size == num_perm]
        out: list[list[bytes] | None] = [None if sig.size == num_perm else self._keys(sig) for sig in signatures]
        if not full:
            return out
        matrix = np.stack([signatures[i] for i in full]).astype(np.uint32, copy=False)
        signed = (matrix != _MAX_HASH).any(axis=1).tolist()
        data = np.ascontiguousarray(matrix).tobytes()
        width, row_bytes = 4 * self.config.lsh_rows, 4 * num_perm
        starts = range(0, width * len(self._bands), width)
        for n, i in enumerate(full):
            if signed[n]:
                base = n * row_bytes
                out[i] = [data[base + start : base + start + width] for start in starts]
        return out


def _signed(signature: np.ndarray) -> bool:
    """A signature of some text (not empty, not all-max: the signature of no shingle)."""
    return bool(signature.size) and bool((signature != _MAX_HASH).any())


def signature_bytes(signature: np.ndarray) -> bytes:
    return np.asarray(signature, dtype="<u4").tobytes()


def signature_from_bytes(data: bytes | None, num_perm: int) -> np.ndarray:
    if not data or len(data) != 4 * num_perm:
        return np.zeros(0, dtype=np.uint32)
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def pairwise_scores(truth: Iterable[tuple[str, str]], found: Iterable[tuple[str, str]]) -> tuple[float, float]:
    """(precision, recall) of ``found`` against ``truth`` over pairs of items in one story.

    Both are (item, story) pairs; two items are a positive pair when they share a story. With no
    pair at all on a side, its score is 1.0 (nothing claimed, nothing missed).
    """
    truth_pairs = _pairs(truth)
    found_pairs = _pairs(found)
    hits = len(truth_pairs & found_pairs)
    precision = hits / len(found_pairs) if found_pairs else 1.0
    recall = hits / len(truth_pairs) if truth_pairs else 1.0
    return precision, recall


def _pairs(assignments: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    stories: dict[str, list[str]] = {}
    for item, story in assignments:
        stories.setdefault(story, []).append(item)
    pairs: set[tuple[str, str]] = set()
    for items in stories.values():
        items = sorted(set(items))
        pairs.update((a, b) for i, a in enumerate(items) for b in items[i + 1 :])
    return pairs
