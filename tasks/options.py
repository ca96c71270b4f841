"""The processing of option chain snapshots: raw pages -> parse -> check -> our IV -> hot store.

The same path as bars and corporate actions (:mod:`tasks.processing`): per underlying, its pending
snapshot pages are taken as the collection parsed them or re-parsed from the raw zone; records that
cannot be stored (:mod:`quality.options`: an OCC symbol that does not parse, another underlying's
contract, an expired contract, a negative or zero price) are dead-lettered with their reasons, one
letter per raw page; the rest are priced by our IV kernel (:mod:`features.option_chains`, with the
stored rate curve and the underlying's trailing dividend yield) and ONE transaction writes the
contracts, the quotes, the watermark, each snapshot's chain features (timeframe 15min, with the
ATM IV term structure at 7, 60 and 90 days) and the day's (1day) in the feature store, the letters
and the pages' processed mark. A crash anywhere
leaves all of it to the next run, and the idempotent upsert makes that rerun exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg

from core import model
from core.settings import OptionSettings
from features.option_chains import TERM_TENORS_DAYS, atm_iv_at_tenors, price_chain, trailing_dividend_yield
from quality.options import check_option_snapshots
from sources.registry import SourceRegistry
from storage.corporate_actions import read_corporate_actions
from storage.hot import UpsertResult
from storage.lake import Lake
from storage.options import (
    OPTION_DATASET,
    rate_curve_for,
    read_stored_quotes,
    read_term_structure,
    write_daily_features,
    write_option_chain,
    write_option_quotes,
    write_snapshot_features,
)
from tasks.collection import ParsedPage
from tasks.processing import (
    PAGE_KEY,
    PendingPage,
    SymbolProcessing,
    at_hand,
    claim_pages,
    page_frames,
    quarantine_by_page,
    read_unparsed,
)

OPTION_DATASETS = (OPTION_DATASET,)
_PAGE = PAGE_KEY


def process_symbol_options(
    conn: psycopg.Connection,
    lake: Lake,
    pages: Sequence[PendingPage],
    settings: OptionSettings,
    parsed: Mapping[str, ParsedPage] | None = None,
    registry: SourceRegistry | None = None,
) -> SymbolProcessing:
    """Store one underlying's pending chain snapshot pages in one transaction (module docstring)."""
    underlying = pages[0].symbol
    outcome = SymbolProcessing(underlying, pages=len(pages))
    stored = read_unparsed(lake, pages, parsed)
    with conn.transaction():
        claimed = claim_pages(conn, at_hand(pages, parsed, stored))
        outcome.pages = len(claimed)
        frames = page_frames(conn, claimed, parsed, stored, registry)
        parts = [kept.frame.assign(**{_PAGE: page.key}) for page, kept in frames if len(kept.frame)]
        empty = model.empty_frame(model.OPTION_SNAPSHOTS).assign(**{_PAGE: pd.Series(dtype="string")})
        chain = pd.concat(parts, ignore_index=True) if parts else empty  # an underlying without options
        outcome.records = len(chain)
        accepted, rejected = check_option_snapshots(chain, underlying)
        priced = price_accepted(conn, accepted, underlying, settings)
        written = write_option_chain(conn, priced.drop(columns=_PAGE, errors="ignore"))
        write_chain_features(conn, underlying, priced["ts"].unique() if len(priced) else ())
        quarantine_by_page(conn, frames, rejected, what="option contract(s)", verdict="refused")
    outcome.accepted, outcome.rejected = len(accepted), len(rejected)
    outcome.inserted, outcome.updated, outcome.unchanged = written.inserted, written.updated, written.unchanged
    return outcome


def write_chain_features(conn: psycopg.Connection, underlying: str, snapshots: Iterable[object]) -> UpsertResult:
    """Each stored snapshot's chain features (feature set options1): its 15min row with the ATM IV
    term structure, and the day's 1day row when it is the session's newest snapshot by its close."""
    written = UpsertResult()
    for snapshot in snapshots:
        at = pd.Timestamp(snapshot)
        written += write_snapshot_features(conn, underlying, at, tenor_ivs(conn, underlying, at))
        written += write_daily_features(conn, underlying, at)
    return written


def tenor_ivs(conn: psycopg.Connection, underlying: str, snapshot: object) -> dict[str, float]:
    """The stored snapshot's ATM IV at :data:`TERM_TENORS_DAYS` as ``atm_iv_<n>d`` (NaN where its
    expiries do not bracket the tenor), from features.option_expiry_features."""
    terms = read_term_structure(conn, underlying, pd.Timestamp(snapshot))
    if terms.empty:
        return {f"atm_iv_{days}d": float("nan") for days in TERM_TENORS_DAYS}
    ivs = atm_iv_at_tenors(
        terms["years"].astype(float).to_numpy(), terms["atm_iv"].astype(float).to_numpy(), TERM_TENORS_DAYS
    )
    return {f"atm_iv_{days}d": float(iv) for days, iv in zip(TERM_TENORS_DAYS, ivs, strict=True)}


def price_accepted(
    conn: psycopg.Connection, accepted: pd.DataFrame, underlying: str, settings: OptionSettings
) -> pd.DataFrame:
    """Our IV and greeks for the accepted rows, with the curve of the snapshot's date (seeded flat
    from ``settings.risk_free_rate`` when none is stored) and the stored dividends' trailing yield."""
    if accepted.empty:
        return accepted
    snapshot = pd.Timestamp(accepted["ts"].max())
    curve = rate_curve_for(conn, snapshot.tz_convert(model.EXCHANGE_TZ).date(), settings.risk_free_rate)
    spot = float(accepted.loc[accepted["ts"] == snapshot, "underlying_price"].median())
    q = trailing_dividend_yield(read_corporate_actions(conn, [underlying]), underlying, snapshot, spot)
    return price_chain(
        accepted,
        curve=curve,
        dividend_yields={underlying: q},
        stale_after=pd.Timedelta(minutes=settings.stale_after_minutes),
    )


@dataclass
class OptionAnalytics:
    """What a recompute of stored snapshots did for some underlyings: snapshots priced again,
    their quotes and chain feature values as the upserts counted them."""

    underlyings: list[str]
    snapshots: int = 0
    quotes: int = 0
    quotes_updated: int = 0
    quotes_unchanged: int = 0
    features_inserted: int = 0
    features_updated: int = 0
    features_unchanged: int = 0


def recompute_option_analytics(
    conn: psycopg.Connection,
    underlyings: Sequence[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: OptionSettings,
) -> OptionAnalytics:
    """Our IV and greeks of the stored snapshots of ``underlyings`` with ``start <= ts < end``
    priced again by the ingest path's :func:`price_accepted` (its spot, rate curve and dividend
    yield, snapshot by snapshot), upserted with their chain features: one transaction per
    underlying, and a second run over the same rows changes nothing."""
    done = OptionAnalytics(list(underlyings))
    for underlying in underlyings:
        with conn.transaction():
            quotes = read_stored_quotes(conn, underlying, start, end)
            snapshots = list(quotes["ts"].unique())
            written, features = UpsertResult(), UpsertResult()
            for snapshot in snapshots:
                chain = quotes[quotes["ts"] == snapshot]
                written += write_option_quotes(conn, price_accepted(conn, chain, underlying, settings))
            features = write_chain_features(conn, underlying, snapshots)
        done.snapshots += len(snapshots)
        done.quotes += len(quotes)
        done.quotes_updated += written.updated
        done.quotes_unchanged += written.unchanged
        done.features_inserted += features.inserted
        done.features_updated += features.updated
        done.features_unchanged += features.unchanged
    return done
