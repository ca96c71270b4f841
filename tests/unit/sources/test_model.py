import pandas as pd
import pytest

from core import model
from core.errors import PermanentSourceError


@pytest.mark.parametrize("raw", ["BRK.B", "BRK-B", "BRK/B", "brk b", " brk.b "])
def test_share_class_spellings_normalize_to_one_symbol(raw):
    assert model.normalize_symbol(raw) == "BRK.B"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("aapl", "AAPL"),
        ("O:AAPL230120C00150000", "O:AAPL230120C00150000"),
        ("^GSPC", "^GSPC"),
        ("X:BTCUSD", "X:BTCUSD"),
    ],
)
def test_plain_and_prefixed_tickers_are_only_upper_cased(raw, expected):
    assert model.normalize_symbol(raw) == expected


def test_normalization_is_idempotent():
    for raw in ["BRK-B", "bf/a", "MSFT", "O:SPY"]:
        once = model.normalize_symbol(raw)
        assert model.normalize_symbol(once) == once


def test_vendor_symbol_spells_share_classes_the_vendor_way():
    assert model.vendor_symbol("BRK.B", "yahoo") == "BRK-B"
    assert model.vendor_symbol("BRK-B", "polygon") == "BRK.B"
    assert model.vendor_symbol("BRK/B", "alpaca") == "BRK.B"
    assert model.vendor_symbol("AAPL", "yahoo") == "AAPL"


def test_frame_coerces_to_the_schema_dtypes_and_order():
    frame = model.frame(
        model.BARS,
        {
            "symbol": "AAPL",
            "ts": ["2023-01-03T14:30:00Z"],
            "timeframe": "1min",
            "open": [1],
            "high": [2],
            "low": [0.5],
            "close": ["1.5"],
            "volume": [10.0],
            "source": "test",
        },
        what="test",
    )
    assert list(frame.columns) == list(model.BARS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        c: str(pd.Series([], dtype=t).dtype) for c, t in model.BARS.items()
    }
    assert frame.loc[0, "close"] == 1.5
    assert frame.loc[0, "ts"] == pd.Timestamp("2023-01-03T14:30:00Z")
    assert pd.isna(frame.loc[0, "vwap"])


def test_frame_refuses_a_missing_required_integer_column():
    with pytest.raises(PermanentSourceError, match="volume"):
        model.frame(
            model.BARS,
            {"symbol": ["A"], "ts": ["2023-01-03"], "open": [1], "high": [1], "low": [1], "close": [1], "source": "x"},
            what="test",
        )


def test_frame_names_the_column_that_cannot_be_coerced():
    with pytest.raises(PermanentSourceError, match="'open'"):
        model.frame({"open": model.F64}, {"open": ["not a price"]}, what="test")


def test_empty_frame_has_the_schema():
    empty = model.empty_frame(model.TRADES)
    assert list(empty.columns) == list(model.TRADES) and len(empty) == 0
    assert str(empty["ts"].dtype) == "datetime64[ns, UTC]"


@pytest.mark.parametrize(("given", "expected"), [("1day", "1day"), ("5Min", "5min"), ("1h", "1hour"), ("1wk", "1week")])
def test_timeframes_have_one_canonical_spelling(given, expected):
    assert model.canonical_timeframe(given) == expected


def test_unknown_timeframe_is_a_typed_error():
    with pytest.raises(PermanentSourceError, match="fortnight"):
        model.parse_timeframe("1fortnight")


def test_session_start_maps_any_time_of_a_session_to_midnight_new_york():
    ts = pd.Series(pd.to_datetime(["2023-01-03T14:30:00Z", "2023-07-03T13:30:00Z"], utc=True))
    assert list(model.session_start(ts)) == [
        pd.Timestamp("2023-01-03T05:00:00Z"),  # EST
        pd.Timestamp("2023-07-03T04:00:00Z"),  # EDT
    ]


def test_to_utc_reads_dates_and_aware_datetimes():
    assert model.to_utc("2023-01-03") == pd.Timestamp("2023-01-03T00:00:00Z")
    assert model.to_utc(pd.Timestamp("2023-01-03T09:30", tz="America/New_York")) == pd.Timestamp("2023-01-03T14:30:00Z")
    with pytest.raises(PermanentSourceError):
        model.to_utc("yesterday-ish")


def test_numeric_columns_reads_regular_numeric_records_column_by_column():
    records = [{"t": 1, "o": 1.5, "vw": 1.4}, {"t": 2, "o": 2.5, "vw": 2.4}]
    columns = model.numeric_columns(records, ("t", "o"), ("vw", "n"))
    assert columns["t"].tolist() == [1, 2] and columns["o"].tolist() == [1.5, 2.5]
    assert columns["vw"].tolist() == [1.4, 2.4] and columns["n"] is None  # absent from every record


@pytest.mark.parametrize(
    "records",
    [
        [],
        [{"t": 1, "o": 1.5}, {"o": 2.5}],  # a required key missing
        [{"t": 1, "o": None}],  # a required value null
        [{"t": 1, "o": "1.5"}],  # not a number
        [{"t": 1, "o": 1.5, "vw": 1.4}, {"t": 2, "o": 2.5}],  # an optional key in some records only
        [[1, 1.5]],  # not an object
    ],
)
def test_numeric_columns_leaves_irregular_records_to_the_general_path(records):
    assert model.numeric_columns(records, ("t", "o"), ("vw",)) is None
