"""`marketpipe scan ...` prints the scanners and refuses bad arguments in one line, exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli
from tests.support.scanners import Market


def test_latest_prints_a_table_with_our_symbols(market: Market) -> None:
    result = run_cli("scan", "latest")

    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["symbol", "timeframe", "ts", "open"]
    for symbol in market.symbols:
        assert any(line.split()[0] == symbol for line in result.stdout.splitlines()[1:])


@pytest.mark.parametrize(
    ("args", "columns"),
    [
        (["movers", "--minutes", "15"], ["symbol", "ts_from", "ts_to", "close_from", "close_to", "change_pct"]),
        (
            ["movers", "--sessions", "5", "--direction", "up"],
            ["symbol", "ts_from", "ts_to", "close_from", "close_to", "change_pct"],
        ),
        (
            ["volume-spikes", "--lookback", "20", "--min-z", "3"],
            ["symbol", "ts", "volume", "mean_volume", "std_volume", "z"],
        ),
        (["gaps", "--min-pct", "2"], ["symbol", "session_date", "open", "prev_ts", "prev_close", "gap_pct"]),
        (["highs-lows", "--days", "52"], ["symbol", "ts", "kind", "price", "prior_extreme"]),
        (["rsi", "--above", "70", "--below", "30"], ["symbol", "ts", "feature_set", "rsi", "kind"]),
    ],
)
def test_each_scanner_prints_rows_for_our_symbols(market: Market, args: list[str], columns: list[str]) -> None:
    result = run_cli(
        "scan",
        *args,
        "--json",
        *(["--limit", "100000"] if "--limit" not in args and args[0] in ("movers", "volume-spikes", "gaps") else []),
    )

    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    mine = [r for r in rows if r["symbol"] in market.symbols]
    assert mine, f"no rows for {market.symbols} in {result.stdout[:500]}"
    assert list(mine[0]) == columns


def test_an_empty_result_says_so(market: Market) -> None:
    result = run_cli("scan", "volume-spikes", "--min-z", "1e9")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "volume-spikes: no rows"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["movers", "--minutes", "0"], "minutes must be a whole number from 1 to 525,600, got 0"),
        (["movers"], "top movers need exactly one of minutes or sessions"),
        (["movers", "--minutes", "5", "--sessions", "2"], "top movers need exactly one of minutes or sessions"),
        (["movers", "--minutes", "5", "--direction", "sideways"], "direction 'sideways' is not one of up, down, both"),
        (
            ["movers", "--minutes", "5", "--timeframe", "1day"],
            "timeframe '1day' cannot be scanned here; use one of 1min, 5min, 15min, 1hour",
        ),
        (["latest", "--timeframe", "2weeks"], "timeframe '2weeks' cannot be scanned here"),
        (["volume-spikes", "--lookback", "1"], "lookback must be a whole number from 2"),
        (["gaps", "--min-pct", "-1"], "min_pct must be a number >= 0, got -1.0"),
        (["highs-lows", "--days", "0"], "days must be a whole number from 1"),
        (["rsi", "--above", "20", "--below", "30"], "below (30.0) must be less than above (20.0)"),
        (["rsi", "--above", "120"], "above must be a number >= 0 and <= 100, got 120.0"),
    ],
)
def test_bad_arguments_are_refused_without_a_traceback(args: list[str], message: str) -> None:
    result = run_cli("scan", *args)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
