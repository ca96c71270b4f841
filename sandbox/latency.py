"""A real vendor's network and its rate limit: per-request latency with jitter and a long tail, and
429 beyond the requests per second the plan allows.

On loopback every request answers in a millisecond, so a client that fetches one page after the
other looks as fast as one that keeps the vendor's rate limit busy. With the latency model on, a
request waits ``median_ms * exp(sigma * z)`` (log-normal, z standard normal) before it is served,
and a ``tail_fraction`` of requests wait ``tail_ms`` more (a slow backend, a retransmit). With
``requests_per_second`` set, the vendor answers 429 (with Retry-After) to a request that finds its
bucket empty: a token bucket holding one second of requests, the way vendors meter a plan.

Off by default; a test or a benchmark turns it on through ``POST /_sandbox/latency`` and off with
``DELETE``. Draws come from one seeded generator: the latency of a run is reproducible in
distribution, not per request (it does not change what is served, only when).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class LatencyConfig:
    median_ms: float = 0.0
    sigma: float = 0.5
    tail_fraction: float = 0.0
    tail_ms: float = 1000.0
    requests_per_second: float | None = None  # the vendor's limit; None: no limit enforced
    vendors: frozenset[str] | None = None  # None = every vendor
    seed: int = 0

    def __post_init__(self) -> None:
        if self.median_ms < 0 or self.tail_ms < 0:
            raise ValueError(f"median_ms={self.median_ms} and tail_ms={self.tail_ms} must be >= 0")
        if not 0.0 <= self.sigma <= 3.0:
            raise ValueError(f"sigma={self.sigma} must be between 0 and 3 (log-normal shape)")
        if not 0.0 <= self.tail_fraction <= 1.0:
            raise ValueError(f"tail_fraction={self.tail_fraction} must be between 0 and 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second={self.requests_per_second} must be > 0 (or null: no limit)")

    @property
    def active(self) -> bool:
        return self.median_ms > 0 or self.tail_fraction > 0 or self.requests_per_second is not None

    def applies_to(self, vendor: str) -> bool:
        return self.active and (self.vendors is None or vendor in self.vendors)

    def mean_ms(self) -> float:
        """The expected delay: the log-normal's mean plus the tail's share."""
        return self.median_ms * math.exp(self.sigma**2 / 2) + self.tail_fraction * self.tail_ms

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyConfig:
        """Build from the control API's JSON; unknown keys are an error so typos do not pass silently."""
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown latency setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        kwargs: dict[str, Any] = {}
        for name in ("median_ms", "sigma", "tail_fraction", "tail_ms"):
            if name in data:
                kwargs[name] = float(data[name])
        if data.get("requests_per_second") is not None:
            kwargs["requests_per_second"] = float(data["requests_per_second"])
        if data.get("vendors") is not None:
            kwargs["vendors"] = frozenset(str(v).lower() for v in data["vendors"])
        if "seed" in data:
            kwargs["seed"] = int(data["seed"])
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        return {
            "median_ms": self.median_ms,
            "sigma": self.sigma,
            "tail_fraction": self.tail_fraction,
            "tail_ms": self.tail_ms,
            "requests_per_second": self.requests_per_second,
            "vendors": sorted(self.vendors) if self.vendors is not None else None,
            "seed": self.seed,
            "mean_ms": round(self.mean_ms(), 3),
        }


class VendorNetwork:
    """The latency draws and the per-vendor rate-limit buckets of one configuration."""

    def __init__(self, config: LatencyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # vendor -> (tokens, updated)

    def delay_seconds(self, vendor: str) -> float:
        cfg = self.config
        if not cfg.applies_to(vendor):
            return 0.0
        with self._lock:
            z, u = self._rng.gauss(0.0, 1.0), self._rng.random()
        delay = cfg.median_ms * math.exp(cfg.sigma * z)
        if u < cfg.tail_fraction:
            delay += cfg.tail_ms
        return delay / 1000.0

    def admit(self, vendor: str) -> bool:
        """Whether the vendor's plan lets this request through now (False: answer 429)."""
        cfg = self.config
        rate = cfg.requests_per_second
        if rate is None or not cfg.applies_to(vendor):
            return True
        now = self._clock()
        with self._lock:
            tokens, updated = self._buckets.get(vendor, (rate, now))
            tokens = min(rate, tokens + (now - updated) * rate)
            admitted = tokens >= 1.0
            self._buckets[vendor] = (tokens - 1.0 if admitted else tokens, now)
        return admitted
