"""The streams' shared state in one app: settings layers, shared clocks, live connections, slots.

Vendor connection limits are properties of a key across connections (Polygon evicts the oldest,
Alpaca refuses the newest and keeps a half-dead connection's slot until it is reaped), so they
live here rather than in a connection. Everything runs on the server's event loop; only the
symbol-day cache is touched from worker threads, and it has its own lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sandbox.cache import ByteBoundedLRU
from sandbox.market import Market
from sandbox.streams.clock import ReplayClock, plan_segments
from sandbox.streams.settings import StreamSettings, parse_overrides
from sandbox.streams.timeline import SymbolDay, TickFaults, symbol_day

if TYPE_CHECKING:
    from sandbox.streams.connection import Connection

CLOSED_HISTORY = 200
CLOCK_SETTINGS = ("session", "sessions", "from", "speed", "late_s")


@dataclass
class HeldSlot:
    """An Alpaca connection slot of a client that vanished without a close frame."""

    vendor: str
    path: str
    key: str
    reaped_at: float  # monotonic

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "path": self.path,
            "key": self.key,
            "reaped_in_s": round(self.reaped_at - now, 3),
        }


class StreamHub:
    def __init__(self, market: Market, bad_key_prefix: str, cache_bytes: int = 1024 * 2**20) -> None:
        self.market = market
        self.bad_key_prefix = bad_key_prefix
        self.defaults: dict[str, Any] = {}
        self.keys: dict[str, dict[str, Any]] = {}
        self.clocks: dict[str, ReplayClock] = {}
        self.live: dict[int, Connection] = {}
        self.closed: deque[dict[str, Any]] = deque(maxlen=CLOSED_HISTORY)
        self.held: list[HeldSlot] = []
        self._days: ByteBoundedLRU[SymbolDay] = ByteBoundedLRU(cache_bytes, lambda d: d.nbytes)
        self._next_id = 0

    # ---- settings -----------------------------------------------------------------------------
    def settings(self, query: Mapping[str, Any], key: str | None = None) -> StreamSettings:
        """defaults < server-wide < per key < URL; ValueError for a bad URL setting."""
        url = parse_overrides(query)
        return StreamSettings.build(self.defaults, self.keys.get(key or "", {}) if key else {}, url)

    def key_is_valid(self, key: str, secret: str | None = None) -> bool:
        values = [key] if secret is None else [key, secret]
        prefix = self.bad_key_prefix
        return all(values) and not (prefix and any(v.startswith(prefix) for v in values))

    # ---- market -------------------------------------------------------------------------------
    def day(self, symbol: str, session: int, faults: TickFaults) -> SymbolDay:
        return self._days.get_or_create(
            (symbol, session, faults), lambda: symbol_day(self.market, symbol, session, faults)
        )

    def new_clock(self, settings: StreamSettings, now: float) -> ReplayClock:
        cal = self.market.calendar
        segments = plan_segments(
            cal, self.market.last_session, settings.session, settings.sessions, settings.from_time, settings.late_s
        )
        return ReplayClock(segments, settings.speed, now)

    def clock_for(self, settings: StreamSettings, now: float) -> ReplayClock:
        """The connection's clock: a running shared one by name, else a new one starting now."""
        if settings.clock and not settings.rate:
            clock = self.clocks.get(settings.clock)
            if clock is None:
                clock = self.clocks[settings.clock] = self.new_clock(settings, now)
            return clock
        return self.new_clock(settings, now)

    def start_clock(self, name: str, body: Mapping[str, Any]) -> ReplayClock:
        unknown = sorted(set(body) - set(CLOCK_SETTINGS))
        if unknown:
            raise ValueError(f"unknown clock setting(s) {unknown}; allowed: {list(CLOCK_SETTINGS)}")
        clock = self.new_clock(StreamSettings.build(parse_overrides(body)), time.monotonic())
        self.clocks[name] = clock
        return clock

    def clock_json(self, clock: ReplayClock, now: float) -> dict[str, Any]:
        where = clock.now(now)
        if where is None:
            last = clock.segments[-1] if clock.segments else None
            return {"done": True, "market_ns": last.end_ns if last else None, "market_time": None, "session": None}
        index, market_ns = where
        session = clock.segments[index].session
        instant = datetime.fromtimestamp(market_ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
        return {
            "done": False,
            "market_ns": market_ns,
            "market_time": instant,
            "session": str(self.market.calendar.day(session)),
            "speed": clock.speed,
        }

    # ---- connections --------------------------------------------------------------------------
    def register(self, conn: Connection) -> int:
        self._next_id += 1
        self.live[self._next_id] = conn
        return self._next_id

    def unregister(self, conn: Connection) -> None:
        self.live.pop(conn.id, None)
        self.closed.append(conn.to_json())

    def authenticated(self, vendor: str, key: str, path: str | None = None) -> list[Connection]:
        """Live authenticated connections of `key`, oldest first (`path` narrows to one endpoint)."""
        return [
            c
            for c in sorted(self.live.values(), key=lambda c: c.id)
            if c.vendor == vendor and c.key == key and c.authed.is_set() and (path is None or c.path == path)
        ]

    def held_slots(self, vendor: str, path: str, key: str, now: float) -> int:
        self.held = [h for h in self.held if h.reaped_at > now]
        return sum(1 for h in self.held if (h.vendor, h.path, h.key) == (vendor, path, key))

    def hold_slot(self, vendor: str, path: str, key: str, seconds: float) -> None:
        if seconds > 0:
            self.held.append(HeldSlot(vendor, path, key, time.monotonic() + seconds))

    def reap(self) -> int:
        count = len(self.held)
        self.held = []
        return count

    def disconnect(self, vendor: str | None, key: str | None, code: int) -> int:
        chosen = [
            c for c in self.live.values() if (vendor is None or c.vendor == vendor) and (key is None or c.key == key)
        ]
        for conn in chosen:
            conn.end_by_server(code, "disconnected by the sandbox control API")
        return len(chosen)

    def reset(self) -> None:
        self.defaults = {}
        self.keys = {}
        self.clocks = {}
        self.held = []
        self.closed.clear()

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        self.held = [h for h in self.held if h.reaped_at > now]
        return {
            "defaults": StreamSettings.build(self.defaults).to_json(),
            "keys": {k: StreamSettings.build(self.defaults, v).to_json() for k, v in self.keys.items()},
            "clocks": {name: self.clock_json(c, now) for name, c in self.clocks.items()},
            "connections": [c.to_json() for c in self.live.values()] + list(self.closed),
            "slots": [h.to_json(now) for h in self.held],
        }
