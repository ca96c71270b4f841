"""Seeded fault decisions and the pure transformations that inject them into responses.

A decision is a function of (seed, vendor, canonical request, how many times that exact request
was seen): concurrent clients get the same faults run after run whatever the interleaving, and a
client that retries a failed request gets a fresh draw, so a resilient client always gets through.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from sandbox.config import DATA_FAULTS, REQUEST_FAULTS, FaultConfig
from sandbox.prices import symbol_hash
from sandbox.textgen import hash_uniform


@dataclass(frozen=True)
class FaultDecision:
    kind: str | None  # one of REQUEST_FAULTS, "killed", or None
    data_faults: frozenset[str]
    key: int  # seeds the record-level choices of this response

    @property
    def status(self) -> int:
        if self.kind == "rate_limit":
            return 429
        if self.kind == "killed":
            return 503
        if self.kind == "server_error":
            return (500, 502, 503)[self.key % 3]
        if self.kind == "timeout":
            return 504
        return 200


NO_FAULT = FaultDecision(None, frozenset(), 0)


class FaultPlan:
    """The faults of one run: the config plus how often each request has been seen."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def decide(self, vendor: str, canonical_request: str, symbols: list[str]) -> FaultDecision:
        cfg = self.config
        if not cfg.active or (cfg.vendors is not None and vendor not in cfg.vendors):
            return NO_FAULT
        with self._lock:
            attempt = self._seen[canonical_request]
            self._seen[canonical_request] += 1
        key = symbol_hash(f"{cfg.seed}|{vendor}|{canonical_request}|{attempt}")
        if any(s.upper() in cfg.killed_symbols for s in symbols):
            return FaultDecision("killed", frozenset(), key)
        u = hash_uniform(np.array([key, key + 1, key + 2], dtype=np.uint64), cfg.seed)
        edge = 0.0
        for kind in REQUEST_FAULTS:
            edge += float(cfg.rates.get(kind, 0.0))
            if u[0] < edge:
                return FaultDecision(kind, frozenset(), key)
        data = frozenset(k for k, x in zip(DATA_FAULTS, u[1:], strict=True) if x < float(cfg.rates.get(k, 0.0)))
        return FaultDecision(None, data, key)


def _chosen(n: int, fraction: float, key: int) -> np.ndarray:
    """Indexes of about `fraction` of n records (at least one when n > 0), chosen by `key`."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    u = hash_uniform(np.arange(n, dtype=np.uint64), key)
    picked = np.flatnonzero(u < fraction)
    return picked if picked.size else np.array([int(np.argmin(u))])


def drop_records(records: list[Any], fraction: float, key: int) -> int:
    """Remove some records in place (a "missing bars" gap); returns how many."""
    gone = set(_chosen(len(records), fraction, key).tolist())
    records[:] = [r for i, r in enumerate(records) if i not in gone]
    return len(gone)


def duplicate_records(records: list[Any], fraction: float, key: int) -> int:
    """Repeat some records right after themselves in place; returns how many copies were added."""
    twice = set(_chosen(len(records), fraction, key + 7).tolist())
    out: list[Any] = []
    for i, r in enumerate(records):
        out.append(r)
        if i in twice:
            out.append(dict(r) if isinstance(r, dict) else r)
    records[:] = out
    return len(twice)


def malform_records(records: list[Any], fraction: float, key: int) -> int:
    """Corrupt some records in place: numbers become strings, one field disappears."""
    bad = _chosen(len(records), fraction, key + 13).tolist()
    for i in bad:
        rec = records[i]
        if not isinstance(rec, dict) or not rec:
            records[i] = {"error": "corrupt"}
            continue
        rec = dict(rec)
        fields = sorted(rec)
        rec.pop(fields[key % len(fields)])
        for f in list(rec):
            if isinstance(rec[f], (int, float)) and not isinstance(rec[f], bool):
                rec[f] = "NaN?"
                break
        records[i] = rec
    return len(bad)


def truncate_body(body: bytes, key: int) -> bytes:
    """Cut a serialized body somewhere in its middle, so it is no longer valid JSON."""
    if len(body) < 4:
        return body[:1]
    cut = 1 + key % max(1, len(body) * 2 // 3)
    return body[:cut]
