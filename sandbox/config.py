"""Configuration of one sandbox run: the market seed, what counts as unknown or bad, and faults.

Frozen dataclasses, because a sandbox serves one reproducible market per process: the seed and
the "as of" date must not drift while clients page through results. Faults are the one thing a
test changes at run time, through the control API, which swaps the whole `FaultConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

#: Fault kinds understood by the sandbox, in the order their probability bands are laid out.
FAULT_KINDS: tuple[str, ...] = (
    "rate_limit",  # 429 with Retry-After
    "server_error",  # 500/502/503
    "timeout",  # sleep longer than a client's timeout, then 504
    "slow",  # sleep `slow_seconds`, then answer normally
    "truncated",  # 200 with the JSON body cut short
    "malformed",  # 200 with valid JSON whose records have wrong types / missing fields
    "missing_bars",  # 200 with some records silently left out
    "duplicates",  # 200 with some records repeated
)

#: Request-level faults (at most one per request), drawn from one uniform number.
REQUEST_FAULTS = ("rate_limit", "server_error", "timeout", "slow", "truncated", "malformed")
#: Record-level faults, drawn independently after a request-level "no fault".
DATA_FAULTS = ("missing_bars", "duplicates")


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities per fault kind (0..1), applied per request, reproducible from `seed`.

    A decision depends on the seed, the request's canonical form and how many times that exact
    request was seen, never on arrival order, so concurrent clients get the same outcomes run
    after run and a retried request gets a fresh draw.
    """

    seed: int = 0
    rates: Mapping[str, float] = field(default_factory=dict)
    retry_after_seconds: float = 1.0
    timeout_seconds: float = 30.0
    slow_seconds: float = 2.0
    killed_symbols: frozenset[str] = frozenset()
    vendors: frozenset[str] | None = None  # None = every vendor
    record_fraction: float = 0.1  # share of records dropped / duplicated by the data faults

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {list(FAULT_KINDS)}")
        for kind, rate in self.rates.items():
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"fault rate {kind}={rate} must be between 0 and 1")
        if sum(float(self.rates.get(k, 0.0)) for k in REQUEST_FAULTS) > 1.0 + 1e-9:
            raise ValueError("the request-level fault rates add up to more than 1")
        if not 0.0 < self.record_fraction <= 1.0:
            raise ValueError(f"record_fraction={self.record_fraction} must be in (0, 1]")

    @property
    def active(self) -> bool:
        return bool(self.killed_symbols) or any(float(r) > 0 for r in self.rates.values())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build from the control API's JSON; unknown keys are an error so typos do not pass silently."""
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        kwargs: dict[str, Any] = dict(data)
        if "rates" in kwargs:
            kwargs["rates"] = {str(k): float(v) for k, v in dict(kwargs["rates"]).items()}
        if "killed_symbols" in kwargs:
            kwargs["killed_symbols"] = frozenset(str(s).upper() for s in kwargs["killed_symbols"])
        if kwargs.get("vendors") is not None:
            kwargs["vendors"] = frozenset(str(v).lower() for v in kwargs["vendors"])
        for name in ("seed",):
            if name in kwargs:
                kwargs[name] = int(kwargs[name])
        for name in ("retry_after_seconds", "timeout_seconds", "slow_seconds", "record_fraction"):
            if name in kwargs:
                kwargs[name] = float(kwargs[name])
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rates": {k: float(self.rates.get(k, 0.0)) for k in FAULT_KINDS},
            "retry_after_seconds": self.retry_after_seconds,
            "timeout_seconds": self.timeout_seconds,
            "slow_seconds": self.slow_seconds,
            "killed_symbols": sorted(self.killed_symbols),
            "vendors": sorted(self.vendors) if self.vendors is not None else None,
            "record_fraction": self.record_fraction,
        }


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that defines one sandbox market and how it treats callers.

    `as_of` pins "today" (the last day with data, corporate actions and news); None means the
    current New York date, fixed when the market is built. `now` pins the clock at an instant
    (nothing after it is served: see `sandbox.clock`); without it a pinned `as_of` serves that
    whole day and an unpinned market follows the wall clock.
    """

    seed: int = 42
    unknown_symbol_prefix: str = "ZZZ"
    bad_key_prefix: str = "invalid"
    as_of: date | None = None
    now: datetime | None = None
    cache_mb: int = 256
    faults: FaultConfig = field(default_factory=FaultConfig)
