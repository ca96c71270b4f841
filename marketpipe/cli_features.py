"""`marketpipe bench features`: the feature engine against TA-Lib, measured in one run.

Registered on the main app in ``marketpipe.cli``; commands read their settings from ``ctx.obj["settings"]``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def bench_features(
    ctx: typer.Context,
    symbols: Annotated[int, typer.Option(min=1, help="symbols of synthetic daily bars")] = 1000,
    bars: Annotated[int, typer.Option(min=2, help="bars per symbol")] = 2000,
    repeat: Annotated[int, typer.Option(min=1, help="timed runs of each side (the best counts)")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """The full standard feature set through the engine vs TA-Lib per symbol (SMA, EMA, RSI, MACD,
    BBANDS, ATR, OBV): throughputs, their ratio, JIT compile time and peak extra memory."""
    from bench import features as bench
    from features import feature_params

    report = bench.run(symbols, bars, repeat=repeat, params=feature_params(ctx.obj["settings"].features))
    typer.echo(json.dumps(report, indent=2) if as_json else bench.render_table(report))
