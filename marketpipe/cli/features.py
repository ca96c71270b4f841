"""`marketpipe features ...`: the feature store (see :mod:`storage.feature_tables`)."""

from __future__ import annotations

from typing import Annotated

import typer

from marketpipe.cli.context import settings_of

app = typer.Typer(help="Feature store: computed features and their Parquet export.", no_args_is_help=True)


@app.command("export")
def features_export(
    ctx: typer.Context,
    symbols: Annotated[str, typer.Option(help="comma-separated tickers")],
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="end (exclusive), YYYY-MM-DD")],
    timeframe: Annotated[str, typer.Option(help="1min, 5min, 15min, 1hour or 1day")] = "1day",
    names: Annotated[str | None, typer.Option(help="comma-separated feature names [default: all]")] = None,
    prefix: Annotated[str, typer.Option(help="lake key prefix")] = "features",
    feature_set: Annotated[str | None, typer.Option(help="feature-set version [default: the latest]")] = None,
) -> None:
    """Features of SYMBOLS in [START, END) to the lake as Parquet (one object per symbol), for ML."""
    from db.connect import database_connection
    from pipeline.request import parse_symbols, parse_timeframe_choice
    from storage.feature_tables import export_features
    from storage.lake import Lake

    settings = settings_of(ctx)
    with database_connection(settings) as conn:
        keys = export_features(
            conn,
            Lake.from_settings(settings.lake),
            list(parse_symbols(symbols)),
            start,
            end,
            parse_timeframe_choice(timeframe),
            names.split(",") if names else None,
            prefix,
            settings.storage.data_lake.compression,
            feature_set=feature_set,
        )
    typer.echo("\n".join(f"s3://{settings.lake.bucket}/{key}" for key in keys) or "no features stored for that range")
