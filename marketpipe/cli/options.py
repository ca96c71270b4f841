"""`marketpipe options ...`: take option chain snapshots and read them back.

``ingest`` runs the ``ingest`` flow with ``data_type="options"`` (the vendor's snapshot of now, our
IV and greeks, dead letters for refused contracts); ``chain`` prints a stored snapshot with its
features (features.option_chain_features).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from marketpipe.cli.context import overrides_of, settings_of

app = typer.Typer(help="Option chains: snapshots with our implied volatility and greeks.", no_args_is_help=True)

FLAG_NAMES = {1: "crossed", 2: "stale", 4: "zero-bid", 8: "below-intrinsic", 16: "no-quote"}


@app.command("ingest")
def options_ingest(
    ctx: typer.Context,
    symbols: Annotated[str, typer.Option(help="comma-separated underlyings, e.g. AAPL,MSFT")],
    source: Annotated[str, typer.Option(help="the vendor of the snapshots")] = "polygon",
) -> None:
    """Take a snapshot of each underlying's chain into the hot store (same as run_ingestion(data_type='options'))."""
    import asyncio

    from flows.ingestion import ingest_flow
    from pipeline.request import parse_ingest_request
    from sources.factory import market_data_sources

    settings = settings_of(ctx)
    request = parse_ingest_request(
        data_type="options",
        symbols=symbols,
        start_date=None,
        end_date=None,
        source=source,
        known_sources=market_data_sources(settings),
    )
    summary = asyncio.run(
        ingest_flow(
            symbols=list(request.symbols),
            start_date=request.start.isoformat(),
            end_date=request.end.isoformat(),
            data_type="options",
            source=request.source,
            overrides=overrides_of(ctx),
        )
    )
    fetched = sum(c["records"] for c in summary["collected"])
    stored = sum(p["inserted"] + p["updated"] for p in summary["processed"])
    rejected = sum(p["rejected"] for p in summary["processed"])
    typer.echo(f"fetched {fetched:,} contracts, stored {stored:,} ({rejected:,} refused) in {summary['seconds']:.1f} s")
    if rejected:
        typer.echo("refused contracts are dead letters with their reasons: see `marketpipe dlq list`")
    empty = [c["symbol"] for c in summary["collected"] if not c["records"] and not c["error"]]
    if empty:
        typer.echo(
            f"no option contracts served for {', '.join(empty)}: {source} lists no options on "
            f"{'these underlyings' if len(empty) > 1 else 'this underlying'} (unknown or not optionable)",
            err=True,
        )
    if summary["failed"]:
        typer.echo(f"failed (see `marketpipe dlq list`): {', '.join(summary['failed'])}", err=True)
        raise typer.Exit(1)


def _flags(bits: int) -> str:
    return ",".join(name for bit, name in FLAG_NAMES.items() if bits & bit) or "-"


@app.command("chain")
def options_chain(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(help="the underlying, e.g. AAPL")],
    expiry: Annotated[
        list[str] | None, typer.Option("--expiry", help="only this expiration date, YYYY-MM-DD (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object: the snapshot's features and rows")] = False,
) -> None:
    """The newest stored snapshot of SYMBOL's chain: its features, the term structure (ATM IV and
    25-delta skew by expiry), then the quotes with our IV and delta, reasons and flags."""
    import json

    from core.errors import RequestError
    from db.connect import database_connection
    from pipeline.request import parse_symbols
    from storage.options import (
        latest_snapshot_ts,
        read_chain_features,
        read_option_chain,
        read_term_structure,
        stored_expirations,
    )

    (underlying,) = parse_symbols(symbol)[:1]
    wanted = [_parse_day(e) for e in expiry or []]
    with database_connection(settings_of(ctx), autocommit=True) as conn:
        ts = latest_snapshot_ts(conn, underlying)
        if ts is None:
            raise RequestError(
                f"no option chain of {underlying} is stored: take one with `marketpipe options ingest --symbols "
                f"{underlying}`"
            )
        listed = stored_expirations(conn, underlying, ts)
        missing = [d for d in wanted if d not in listed]
        if missing:
            raise RequestError(
                f"{underlying} has no expiration {', '.join(d.isoformat() for d in missing)} in its snapshot of "
                f"{ts.isoformat()}: use one of {', '.join(d.isoformat() for d in listed)}"
            )
        chain = read_option_chain(conn, underlying, ts=ts, expirations=wanted or None)
        features = read_chain_features(conn, underlying, ts)
        terms = read_term_structure(conn, underlying, ts)[
            ["expiration", "days_to_expiry", "atm_iv", "skew_25d", "call_volume", "put_volume", "priced", "contracts"]
        ]
    if as_json:
        rows = json.loads(chain.to_json(orient="records", date_format="iso", date_unit="s"))
        term_rows = json.loads(terms.to_json(orient="records", date_format="iso", date_unit="s"))
        body = {"underlying": underlying, "ts": ts.isoformat(), "features": features, "term_structure": term_rows}
        typer.echo(json.dumps({**body, "rows": rows}))
        return
    spot = float(chain["underlying_price"].iloc[0]) if len(chain) else float("nan")
    typer.echo(f"{underlying} options at {ts.isoformat()}  underlying {spot:,.2f}  {len(chain):,} contracts")
    typer.echo("  ".join(f"{k} {_fmt(v)}" for k, v in features.items() if k not in ("underlying", "ts")))
    typer.echo(terms.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:,.4f}"))
    table = chain.assign(flags=chain["quote_flags"].map(_flags))[
        [
            "expiration",
            "strike",
            "contract_type",
            "bid",
            "ask",
            "last_price",
            "volume",
            "open_interest",
            "iv",
            "vendor_iv",
            "delta",
            "iv_reason",
            "flags",
        ]
    ].rename(columns={"contract_type": "type", "last_price": "last", "open_interest": "oi", "iv_reason": "reason"})
    typer.echo(table.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:,.4f}"))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _parse_day(text: str) -> date:
    from core.errors import RequestError

    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise RequestError(f"--expiry {text!r} is not a date: use YYYY-MM-DD, e.g. --expiry 2026-01-16") from None
