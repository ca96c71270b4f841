"""Invariants the reliability tests check after every fault."""

from __future__ import annotations

from collections.abc import Sequence

from core.settings import Settings
from db.connect import database_connection


def watermarks_ahead(settings: Settings, symbols: Sequence[str]) -> list[tuple]:
    """Intraday bar series of ``symbols`` whose watermark is later than their newest committed bar
    (must always be none: a watermark advances only with the data it covers)."""
    with database_connection(settings) as conn:
        return conn.execute(
            """
            SELECT w.symbol, w.high_water_ts, max(b.ts) FROM ops.watermarks w
            LEFT JOIN market.bars_intraday b ON b.symbol = w.symbol AND b.timeframe = w.timeframe
            WHERE w.symbol = ANY(%s) AND w.dataset = 'bars'
            GROUP BY w.symbol, w.high_water_ts HAVING max(b.ts) IS NULL OR w.high_water_ts > max(b.ts)
            """,
            (list(symbols),),
        ).fetchall()
