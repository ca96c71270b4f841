"""Polygon aggregates read straight from the body (core.json_columns, sources.polygon.parsing.
read_aggregates_body) give exactly what decoding and parsing give, or decline and leave the page to
that path: never another frame."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from core.errors import PermanentSourceError
from core.json_columns import records_as_columns
from sources.polygon.parsing import parse_aggregates, read_aggregates_body


def page(records: list[dict[str, Any]], **head: Any) -> dict[str, Any]:
    return {"ticker": "ZZAB", "queryCount": len(records), "resultsCount": len(records), "adjusted": False,
            "results": records, "status": "OK", "request_id": "r1", **head}  # fmt: skip


def bars(count: int, seed: int = 3) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    closes = np.round(50 + np.cumsum(rng.normal(0, 0.05, count)), 4)
    return [
        {"v": int(rng.integers(1, 90_000)), "vw": round(float(c) + 0.0013, 4), "o": float(c), "c": float(c),
         "h": round(float(c) + 0.02, 2), "l": round(float(c) - 0.02, 2), "t": 1709562600000 + 60_000 * i,
         "n": int(rng.integers(1, 900))}
        for i, c in enumerate(closes)
    ]  # fmt: skip


def both(body: bytes, timeframe: str = "1min") -> tuple[tuple[Any, pd.DataFrame] | None, pd.DataFrame]:
    return read_aggregates_body(body, timeframe=timeframe, symbol="ZZAB"), parse_aggregates(
        orjson.loads(body), timeframe=timeframe, symbol="ZZAB"
    )


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(page(bars(1950))),
        orjson.dumps(page(bars(7), next_url="https://api.polygon.io/v2/aggs/cursor=abc")),
        orjson.dumps(page(bars(40)), option=orjson.OPT_INDENT_2),  # spaces and newlines everywhere
        orjson.dumps(page([{k: v for k, v in b.items() if k not in ("vw", "n")} for b in bars(30)])),  # no optionals
        orjson.dumps(page([{**b, "o": 51, "h": 52, "v": 1.5e3} for b in bars(20)])),  # ints among floats, exponents
        orjson.dumps(page([{**b, "vw": -0.0, "l": 0.0001} for b in bars(5)])),
        orjson.dumps(page([dict(reversed(list(b.items()))) for b in bars(25)])),  # another member order
    ],
    ids=["sandbox-page", "cursor", "indented", "no-optionals", "mixed-kinds", "signs-and-small", "order"],
)
def test_the_columnar_reading_is_the_parsed_frame(body: bytes) -> None:
    read, parsed = both(body)
    assert read is not None
    head, frame = read
    pd.testing.assert_frame_equal(frame, parsed, check_exact=True)
    expected_head = orjson.loads(body)
    del expected_head["results"]
    assert head == expected_head


def test_every_float_is_the_one_the_decoder_reads() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [np.round(rng.uniform(0, 5000, 3000), d) for d in range(7)]
        + [np.round(rng.uniform(1e6, 1e9, 500), 5)]
        + [
            np.array(
                [
                    float(f"{m}e-{k}")
                    for m, k in zip(rng.integers(1, 10**12, 500), rng.integers(5, 16, 500), strict=True)
                ]
            )
        ]
    )  # up to 15 significant digits: what prices and volumes are
    records = [{"t": 1, "o": float(v), "h": float(v), "l": float(v), "c": float(v), "v": 1} for v in values]
    body = orjson.dumps(page(records))
    read = records_as_columns(body, "results", ("t", "o", "h", "l", "c", "v"))
    if read is None:  # some literal too long for the exact path: the usual decoder then
        pytest.fail("a plain page of decimal prices was declined")
    assert np.array_equal(read[1]["o"], np.array([r["o"] for r in orjson.loads(body)["results"]]))


@pytest.mark.parametrize(
    "records",
    [
        [{**b, "otc": True} for b in bars(3)],  # a member it does not know
        [{**b, "vw": None} for b in bars(3)],  # a null
        [{**b, "o": "51.2"} for b in bars(3)],  # a string
        [b if i else {k: v for k, v in b.items() if k != "n"} for i, b in enumerate(bars(4))],  # in some only
        [{**b, "T": "ZZAB"} for b in bars(3)],  # grouped daily rows
        [{**b, "v": 2**60} for b in bars(3)],  # an integer past 2**53
        [{**b, "c": 0.12345678901234567} for b in bars(3)],  # 17+ significant digits
        [],  # no rows
    ],
    ids=["unknown-member", "null", "string", "optional-in-some", "grouped", "big-int", "long-literal", "empty"],
)
def test_other_shapes_are_left_to_the_parser(records: list[dict[str, Any]]) -> None:
    read, parsed = both(orjson.dumps(page(records)))
    assert read is None
    assert isinstance(parsed, pd.DataFrame)


def test_a_body_with_the_member_name_twice_is_left_to_the_parser() -> None:
    body = orjson.dumps({**page(bars(3)), "meta": {"results": [1]}})
    assert records_as_columns(body, "results", ("t", "o")) is None


def test_a_required_field_missing_everywhere_is_left_to_the_parser_which_names_it() -> None:
    body = orjson.dumps(page([{k: v for k, v in b.items() if k != "c"} for b in bars(3)]))
    assert read_aggregates_body(body, timeframe="1min", symbol="ZZAB") is None
    with pytest.raises(PermanentSourceError, match="'c'"):
        parse_aggregates(orjson.loads(body), timeframe="1min", symbol="ZZAB")


def test_a_vendor_error_status_is_the_parser_s_error() -> None:
    body = orjson.dumps(page(bars(2), status="ERROR", error="plan does not include minute bars"))
    with pytest.raises(PermanentSourceError, match="plan does not include") as read:
        read_aggregates_body(body, timeframe="1min")
    with pytest.raises(PermanentSourceError) as parsed:
        parse_aggregates(orjson.loads(body), timeframe="1min")
    assert str(read.value) == str(parsed.value)


@pytest.mark.parametrize("cut", [10, 200, -3])
def test_a_truncated_body_is_declined_not_misread(cut: int) -> None:
    body = orjson.dumps(page(bars(20)))
    assert read_aggregates_body(body[:cut], timeframe="1min", symbol="ZZAB") is None


@pytest.mark.parametrize("timeframe", ["1day", "5min", "1hour"])
def test_other_timeframes_read_alike(timeframe: str) -> None:
    read, parsed = both(orjson.dumps(page(bars(60))), timeframe)
    assert read is not None
    pd.testing.assert_frame_equal(read[1], parsed, check_exact=True)
