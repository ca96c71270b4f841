"""The raw zone on the real S3 lake: stored once per request, listed back by partition."""

from __future__ import annotations

from datetime import date

from core.settings import Settings
from storage.lake import Lake
from storage.raw import iter_raw_pages, store_raw_page


def test_pages_are_stored_idempotently_and_replayable(stack: Settings) -> None:
    lake = Lake.from_settings(stack.lake)
    common = {"source": "polygon", "dataset": "bars_rawtest", "symbol": "BRK.B", "data_date": date(2024, 1, 2)}
    first = store_raw_page(lake, request={"url": "/a", "params": {"cursor": "1"}}, payload={"results": [1]}, **common)
    again = store_raw_page(lake, request={"url": "/a", "params": {"cursor": "1"}}, payload={"results": [1]}, **common)
    second = store_raw_page(lake, request={"url": "/a", "params": {"cursor": "2"}}, payload={"results": [2]}, **common)
    assert first.key == again.key != second.key
    assert first.checksum == again.checksum != second.checksum
    first, second = first.key, second.key

    pages = list(iter_raw_pages(lake, source="polygon", dataset="bars_rawtest", symbol="BRK.B"))
    assert {p.key for p in pages} == {first, second}
    assert {p.request["params"]["cursor"]: p.payload["results"] for p in pages} == {"1": [1], "2": [2]}
    for key in (first, second):
        lake.delete(key)
