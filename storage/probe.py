"""Round trips through the hot store and the lake: the smoke job's work and the health check's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg

from storage.lake import Lake

PROBE_SYMBOL = "MP.PROBE"


def probe_hot_store(conn: psycopg.Connection, now: datetime | None = None) -> int:
    """Write three 1-minute probe bars into the intraday hypertable and read them back.

    Runs inside a transaction that is rolled back, so the probe leaves no row in market data.
    Returns the number of bars read back.
    """
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    rows = [
        (PROBE_SYMBOL, "1min", now.replace(minute=m), 100.0 + m, 101.0 + m, 99.0 + m, 100.5 + m, 1000 * (m + 1))
        for m in range(3)
    ]
    tx = conn.transaction(force_rollback=True)
    with tx:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO market.bars_intraday (symbol, timeframe, ts, open, high, low, close, volume, source) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'probe')",
                rows,
            )
        read = conn.execute(
            "SELECT count(*) FROM market.bars WHERE symbol = %s AND timeframe = '1min' AND ts >= %s",
            (PROBE_SYMBOL, rows[0][2]),
        ).fetchone()
    return int(read[0]) if read else 0


def probe_lake(lake: Lake, run_id: str) -> tuple[str, int]:
    """Write a small JSON object under _probe/ and read it back; returns (key, bytes)."""
    key = f"_probe/{run_id}.json"
    body = json.dumps({"run_id": run_id, "written_at": datetime.now(UTC).isoformat()}).encode()
    lake.put_bytes(key, body, content_type="application/json")
    if lake.get_bytes(key) != body:
        from core.errors import StorageError

        raise StorageError(f"lake object s3://{lake.bucket}/{key} read back differs from what was written")
    return key, len(body)
