"""The watermark a frame establishes: its newest final bar, never a provisional one."""

from __future__ import annotations

import pandas as pd

from core.model import PROVISIONAL_FLAG
from storage.watermarks import watermarks_of


def frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "polygon",
            "symbol": [r[0] for r in rows],
            "timeframe": "1day",
            "ts": pd.to_datetime([r[1] for r in rows], utc=True),
            "quality_flags": [r[2] for r in rows],
        }
    )


def test_a_provisional_bar_never_advances_a_watermark() -> None:
    marks = watermarks_of(
        frame(
            [
                ("AAPL", "2024-05-31 04:00", 0),
                ("AAPL", "2024-06-03 04:00", PROVISIONAL_FLAG),
                ("MSFT", "2024-06-03 04:00", 0),
                ("NVDA", "2024-06-03 04:00", PROVISIONAL_FLAG | 64),
            ]
        ),
        dataset="bars",
    )
    newest = {m.symbol: m.high_water_ts for m in marks}
    assert newest == {
        "AAPL": pd.Timestamp("2024-05-31 04:00", tz="UTC").to_pydatetime(),
        "MSFT": pd.Timestamp("2024-06-03 04:00", tz="UTC").to_pydatetime(),
    }


def test_nothing_after_the_first_provisional_bar_counts() -> None:
    marks = watermarks_of(
        frame(
            [
                ("AAPL", "2024-05-30 04:00", 0),
                ("AAPL", "2024-05-31 04:00", PROVISIONAL_FLAG),
                ("AAPL", "2024-06-03 04:00", 0),
            ]
        ),
        dataset="bars",
    )
    assert [m.high_water_ts for m in marks] == [pd.Timestamp("2024-05-30 04:00", tz="UTC").to_pydatetime()]


def test_a_frame_of_one_series_gets_the_watermark_it_gets_among_others() -> None:
    """A frame of one series takes a path without grouping: the same marks as the grouped path."""
    aapl = [
        ("AAPL", "2024-05-29 04:00", 0),
        ("AAPL", "2024-05-31 04:00", 0),
        ("AAPL", "2024-05-30 04:00", 0),
        ("AAPL", "2024-06-03 04:00", PROVISIONAL_FLAG),
        ("AAPL", "2024-06-04 04:00", 0),
    ]
    alone = watermarks_of(frame(aapl), dataset="bars")
    among = watermarks_of(frame([*aapl, ("MSFT", "2024-06-05 04:00", 0)]), dataset="bars")
    assert alone == [m for m in among if m.symbol == "AAPL"]
    assert [m.high_water_ts for m in alone] == [pd.Timestamp("2024-05-31 04:00", tz="UTC").to_pydatetime()]
    assert watermarks_of(frame(aapl), dataset="bars", source="alpaca")[0].source == "alpaca"


def test_a_row_without_a_symbol_is_no_series_of_its_own() -> None:
    rows = frame([("AAPL", "2024-05-29 04:00", 0), ("AAPL", "2024-06-05 04:00", 0)])
    rows.loc[1, "symbol"] = None
    assert [m.high_water_ts for m in watermarks_of(rows, dataset="bars")] == [
        pd.Timestamp("2024-05-29 04:00", tz="UTC").to_pydatetime()
    ]
