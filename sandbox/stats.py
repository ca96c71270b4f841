"""Request and record counters, read by tests through `GET /_sandbox/stats`.

Per vendor: total requests and counts per wall-clock second (for asserting a shared rate limit
held). Per endpoint: statuses, injected faults and records by fate (served intact, dropped,
duplicated, malformed, lost in failed responses), so a fault-storm test can reconcile what a
pipeline delivered plus what it dead-lettered against what the sandbox served.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

WINDOW_SECONDS = 900


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.started = time.time()
            self.vendor_totals: Counter[str] = Counter()
            self.vendor_seconds: dict[str, Counter[int]] = defaultdict(Counter)
            self.endpoints: dict[str, Counter[str]] = defaultdict(Counter)

    def request(self, vendor: str, now: float | None = None) -> None:
        second = int(now if now is not None else time.time())
        with self._lock:
            self.vendor_totals[vendor] += 1
            seconds = self.vendor_seconds[vendor]
            seconds[second] += 1
            if len(seconds) > WINDOW_SECONDS:
                for old in sorted(seconds)[: len(seconds) - WINDOW_SECONDS]:
                    del seconds[old]

    def outcome(self, endpoint: str, status: int, fault: str | None = None, **records: int) -> None:
        with self._lock:
            counters = self.endpoints[endpoint]
            counters["requests"] += 1
            counters[f"status_{status}"] += 1
            if fault:
                counters[f"fault_{fault}"] += 1
            for name, value in records.items():
                if value:
                    counters[name] += value

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            vendors = {}
            for vendor, total in self.vendor_totals.items():
                seconds = self.vendor_seconds[vendor]
                vendors[vendor] = {
                    "total": total,
                    "max_per_second": max(seconds.values(), default=0),
                    "per_second": {str(k): v for k, v in sorted(seconds.items())},
                }
            endpoints = {name: dict(c) for name, c in self.endpoints.items()}
            totals: Counter[str] = Counter()
            for c in self.endpoints.values():
                totals.update({k: v for k, v in c.items() if k.startswith("records_")})
            return {"since": self.started, "vendors": vendors, "endpoints": endpoints, "records": dict(totals)}
