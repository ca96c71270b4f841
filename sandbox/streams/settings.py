"""One stream connection's settings: replay, pacing, vendor limits and faults, from layered overrides.

Overrides arrive as strings (a URL query) or JSON values (the control API) under the names the
package docstring documents; `parse_overrides` validates and types them once, so a typo fails
loudly at the edge instead of silently streaming defaults, and `StreamSettings.build` applies the
layers in order (defaults < server-wide < per key < URL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, time
from typing import Any

from sandbox.market import SYMBOL_PATTERN, canonical_symbol
from sandbox.news import DEFAULT_UNIVERSE

AT_END = ("idle", "close")
STAMPS = ("market", "send")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def universe_symbols(n: int) -> tuple[str, ...]:
    """The first n symbols of the sandbox list: the news universe, then synthetic S0001, S0002..."""
    if n < 1:
        raise ValueError(f"universe={n} must be at least 1")
    head = DEFAULT_UNIVERSE[:n]
    return head + tuple(f"S{i:04d}" for i in range(1, n - len(head) + 1))


@dataclass(frozen=True)
class StreamSettings:
    session: date | None = None  # None = the market's last session
    sessions: int = 1
    from_time: time = time(9, 30)  # "from" on the wire
    speed: float = 1.0  # market seconds per wall second; 0 = as fast as the socket takes it
    rate: float = 0.0  # data messages per second; 0 = paced by the market clock
    universe: tuple[str, ...] = DEFAULT_UNIVERSE
    clock: str = ""  # "" = private to the connection
    batch: int = 1000
    tick_ms: float = 10.0
    at_end: str = "idle"
    stamp: str = "market"
    max_connections: int = 1
    reap_s: float = 90.0
    auth_timeout_s: float = 10.0
    seed: int = 0
    disconnect_after: int = 0
    disconnect_after_s: float = 0.0
    disconnect_code: int = 0  # 0 = abrupt (no close frame)
    stall_after: int = 0
    stall_after_s: float = 0.0
    stall_s: float = 0.0  # 0 = forever
    malformed: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    late: float = 0.0
    late_s: float = 5.0
    corrections: float = 0.0
    cancels: float = 0.0
    kick_slow: int = 0
    future_after: int = 0  # 0 = off; else the first trade after this many data messages is stamped ahead
    future_s: float = 3600.0  # how far ahead of the wall clock that trade is stamped

    @classmethod
    def build(cls, *layers: Mapping[str, Any]) -> StreamSettings:
        """Defaults overridden by each already-parsed layer in turn (later layers win)."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return replace(cls(), **merged)

    @property
    def has_data_faults(self) -> bool:
        return any((self.malformed, self.duplicate, self.reorder))

    def to_json(self) -> dict[str, Any]:
        return {_WIRE_NAME.get(k, k): _to_wire(k, v) for k, v in asdict(self).items()}


_FIELD_TYPES = {f.name: f.type for f in fields(StreamSettings)}
_WIRE_NAME = {"from_time": "from"}
_FIELD_NAME = {v: k for k, v in _WIRE_NAME.items()}
_FRACTIONS = ("malformed", "duplicate", "reorder", "late", "corrections", "cancels")
_NON_NEGATIVE = (
    "speed",
    "rate",
    "tick_ms",
    "reap_s",
    "auth_timeout_s",
    "disconnect_after_s",
    "stall_after_s",
    "stall_s",
    "late_s",
    "future_s",
)
_COUNTS = ("disconnect_after", "stall_after", "kick_slow", "seed", "future_after")
_POSITIVE = ("sessions", "batch", "max_connections")
NAMES = tuple(_WIRE_NAME.get(f, f) for f in _FIELD_TYPES)


def _to_wire(name: str, value: Any) -> Any:
    if isinstance(value, date | time):
        return value.isoformat()
    if name == "universe":
        return list(value)
    if name == "disconnect_code":
        return value or "abrupt"
    return value


def _parse_time(text: str) -> time:
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"from={text!r} is not HH:MM or HH:MM:SS (New York time)")
    hh, mm, ss = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    return time(hh, mm, ss)


def _parse_universe(value: Any) -> tuple[str, ...]:
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return universe_symbols(int(value))
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    symbols = tuple(dict.fromkeys(canonical_symbol(str(s)) for s in items if str(s).strip()))
    bad = [s for s in symbols if not SYMBOL_PATTERN.match(s)]
    if bad or not symbols:
        raise ValueError(f"universe={value!r}: not a count or a list of symbols (bad: {bad})")
    return symbols


def _parse_one(name: str, value: Any) -> Any:
    if name == "session":
        return None if value in (None, "") else date.fromisoformat(str(value))
    if name == "from_time":
        return _parse_time(str(value))
    if name == "universe":
        return _parse_universe(value)
    if name == "disconnect_code":
        if str(value).lower() in ("abrupt", "0", ""):
            return 0
        code = int(value)
        if not (1000 <= code <= 4999) or code in (1005, 1006, 1015):
            raise ValueError(f"disconnect_code={value!r} must be 'abrupt' or a sendable close code (1000-4999)")
        return code
    if name == "at_end":
        if value not in AT_END:
            raise ValueError(f"at_end={value!r} must be one of {AT_END}")
        return value
    if name == "stamp":
        if value not in STAMPS:
            raise ValueError(f"stamp={value!r} must be one of {STAMPS}")
        return value
    if name == "clock":
        return str(value)
    if _FIELD_TYPES[name] == "int":
        number: int | float = int(value)
    else:
        number = float(value)
    if name in _FRACTIONS and not 0.0 <= number <= 1.0:
        raise ValueError(f"{name}={value!r} is a fraction and must be between 0 and 1")
    if name in _NON_NEGATIVE + _COUNTS and number < 0:
        raise ValueError(f"{name}={value!r} must not be negative")
    if name in _POSITIVE and number < 1:
        raise ValueError(f"{name}={value!r} must be at least 1")
    return number


def parse_overrides(data: Mapping[str, Any]) -> dict[str, Any]:
    """Typed field values from wire names and values; ValueError naming the offending setting."""
    unknown = sorted(k for k in data if _FIELD_NAME.get(k, k) not in _FIELD_TYPES or k in _FIELD_NAME.values())
    if unknown:
        raise ValueError(f"unknown stream setting(s) {unknown}; known: {sorted(NAMES)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _FIELD_NAME.get(key, key)
        try:
            out[name] = _parse_one(name, value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad stream setting {key}={value!r}: {exc}") from exc
    return out
