"""The read router: bars, features and trades wherever they live, hot (TimescaleDB) or cold (the lake).

A read of ``[start, end)`` asks two cheap catalogs where its rows are: TimescaleDB's chunk catalog
(is any hot chunk in the range?) and the lake manifest ``ops.lake_files`` (which verified objects
overlap the range and the symbols?). It then reads hot SQL, cold Parquet, or both (:func:`route`):
cold objects through one ``pyarrow.dataset`` over exactly the manifest's files, with the symbol and
time filters pushed down to the Parquet row groups. The hot rows are read before the manifest, so a
chunk tiered during the read is found in one tier or both. Results are merged on the natural key: a row
present in both tiers (a chunk exported but not yet dropped cannot be seen, but late rows re-added
to an old range can) is taken from the hot store, and between two objects from the newer one;
except that for bars a row of a better-ranked vendor (storage.source_precedence) wins over a worse
one wherever each is, as in the hot writer (:func:`merge_tiers`).

Adjusted bars are computed from raw bars with :mod:`storage.corporate_actions`' frame
functions (the same computation as ``market.adjusted_bars``), with the dividends' previous closes
read through the router too, so a read gives the same frame whether its bars are hot or cold.

With ``storage.routing.cold_fallback_enabled`` false the router never reads the lake: a range
whose rows are (partly) in the lake is refused with a :class:`RequestError` that names the range,
the hot window and the setting.

Bars of 5min, 15min, 1hour and 1day also come from the continuous aggregates of the stored
1-minute bars (:mod:`storage.aggregates`, full edition only): a stored bar of the timeframe, hot
or cold, wins over every aggregate bucket its window overlaps, and the aggregate fills the rest.
So 5-minute bars need no vendor fetch when 1-minute bars are stored. Without the aggregates (the
Apache edition) reads return the stored bars only, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from core.errors import RequestError, StorageError
from core.model import BARS, STR, TRADES, TS, canonical_timeframe, frame, to_utc
from core.settings import Settings
from db.replica import read_connection
from storage.aggregates import (
    aggregates_available,
    closed_buckets,
    fill_from_aggregate,
    is_aggregated,
    read_aggregated_bars,
)
from storage.corporate_actions import adjustment_factors, apply_adjustment, read_corporate_actions
from storage.feature_tables import FEATURES, latest_feature_set
from storage.feature_tables import read_features as read_hot_features
from storage.hot import ADJUSTMENTS, BARS_INTRADAY, INTRADAY_TIMEFRAMES, Adjustment, bar_table
from storage.hot import read_bars as read_hot_bars
from storage.lake import Lake
from storage.lifecycle import CompactionReport, compact
from storage.tiering import (
    DATASETS,
    NO_TIMEFRAME,
    LakeFile,
    TierDataset,
    TieringReport,
    arrow_schema,
    manifest_files,
    tier_chunks,
)
from storage.trades import TRADE_KEY, check_trade_request
from storage.trades import read_trades as read_hot_trades
from storage.vendors import source_ranks

CLOSE_LOOKBACK = timedelta(days=31)  # how far before a dividend's ex date its previous close is sought


@dataclass(frozen=True)
class Route:
    """Where a read goes."""

    hot: bool
    cold: tuple[LakeFile, ...]

    @property
    def name(self) -> str:
        return {(True, True): "hot+cold", (True, False): "hot", (False, True): "cold"}.get(
            (self.hot, bool(self.cold)), "none"
        )


def route(hot_chunks: bool, cold_files: Sequence[LakeFile]) -> Route:
    """Pure: read the tiers that hold rows of the range (nothing when neither does)."""
    return Route(hot=hot_chunks, cold=tuple(cold_files))


def check_fallback(
    cold_files: Sequence[LakeFile], start: datetime, end: datetime, hot_since: datetime, allowed: bool, what: str
) -> None:
    """Pure: refuse a read that needs the lake when ``cold_fallback_enabled`` is false."""
    if cold_files and not allowed:
        raise RequestError(
            f"{what} for [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}) UTC reach into the cold lake "
            f"({len(cold_files)} object(s)), but storage.routing.cold_fallback_enabled is false; the hot "
            f"window starts at {hot_since:%Y-%m-%d %H:%M} UTC: ask for a range inside it, or set "
            "storage.routing.cold_fallback_enabled=true"
        )


def merge_tiers(
    parts: Sequence[pd.DataFrame], key: Sequence[str], *, precedence: Sequence[str] | None = None
) -> pd.DataFrame:
    """Concatenate frames in priority order (later wins on the natural ``key``), sorted by key.

    With ``precedence`` (bars: storage.source_precedence) the row of the better-ranked ``source``
    wins a key first, wherever it sits (:func:`storage.vendors.source_ranks`), and the order decides
    only between rows of equal rank: the hot writer's rule, so a worse vendor's bar written hot
    after the better one's was tiered does not replace it."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return parts[0].iloc[0:0] if parts else pd.DataFrame()
    merged = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if precedence is not None:
        sources = merged["source"].to_numpy()
        if (sources != sources[0]).any():  # several vendors (one: the order alone decides)
            ranks = source_ranks(sources, precedence)
            merged = merged.iloc[np.argsort(-ranks, kind="stable")]  # worst first, so the best is last
    merged = merged.drop_duplicates(subset=list(key), keep="last")
    return merged.sort_values(list(key), kind="stable").reset_index(drop=True)


def as_adjustment(adjusted: bool | str) -> Adjustment:
    if adjusted is True:
        return "all"
    if adjusted is False:
        return "raw"
    if adjusted not in ADJUSTMENTS:
        raise RequestError(f"unknown adjustment {adjusted!r}; use True, False or one of {list(ADJUSTMENTS)}")
    return adjusted  # type: ignore[return-value]


class StorageRouter:
    """The seed's StorageRouter: reads that do not care which tier holds the rows.

    ``conn`` is a connection to the hot store (autocommit recommended: reads only; :meth:`tier`
    and :meth:`compact` refuse one inside a transaction), ``lake`` the cold lake, ``now`` fixes the
    hot window for tests (default: the clock).
    """

    def __init__(self, conn: psycopg.Connection, lake: Lake, settings: Settings, *, now: datetime | None = None):
        self.conn, self.lake, self.settings, self._now = conn, lake, settings, now
        self._aggregates: bool | None = None  # whether the database has them; asked on first use

    def __repr__(self) -> str:
        return f"StorageRouter({self.lake!r})"

    @classmethod
    @contextmanager
    def connect(
        cls, settings: Settings, *, max_staleness_seconds: float | None = None, min_lsn: str | None = None
    ) -> Iterator[StorageRouter]:
        """A router on its own autocommit connection to the configured hot store and lake::

        with StorageRouter.connect(load_settings()) as router:
            bars = router.read_bars(["AAPL"], "2024-01-01", "2024-07-01", "1day", adjusted=True)

        With ``database.read_replica.enabled`` the connection is the read replica's when it meets
        the bounds (:func:`db.replica.read_connection`), so such a router reads only (tiering and
        compaction need a router on the primary: ``StorageRouter(conn, lake, settings)`` with
        ``conn`` autocommit, or idle, never inside a transaction).
        """
        with read_connection(
            settings, autocommit=True, max_staleness_seconds=max_staleness_seconds, min_lsn=min_lsn
        ) as conn:
            yield cls(conn, Lake.from_settings(settings.lake), settings)

    def hot_since(self, dataset: str) -> datetime:
        days = self.settings.storage.routing.hot_days(dataset)
        return self.now - timedelta(days=days)

    # -- lifecycle (the seed's StorageRouter also "handles data lifecycle management") ---------
    def tier(self, **options: Any) -> TieringReport:
        """:func:`storage.tiering.tier_chunks` with this router's connection, lake and settings."""
        return tier_chunks(self.conn, self.lake, self.settings, now=self._now, **options)

    def compact(self, **options: Any) -> CompactionReport:
        """:func:`storage.lifecycle.compact` with this router's connection, lake and settings."""
        return compact(self.conn, self.lake, self.settings, **options)

    # -- planning ----------------------------------------------------------------------------
    # Every read takes its hot rows BEFORE it reads the manifest. Tiering a chunk commits its
    # manifest rows and its DROP together, so a chunk tiered between the two reads is in the
    # manifest read second, and a row seen in both is merged once (the hot copy wins). In the other
    # order the manifest is read before that commit and the hot rows after it: the chunk is in
    # neither. Both reads are separate statements, each seeing what had committed when it began.
    def plan(self, ds: TierDataset, symbols: Sequence[str], start: datetime, end: datetime, timeframe: str) -> Route:
        """Which tiers hold rows of the range (catalogs only, no rows read)."""
        hot = self.hot_chunks(ds, start, end)
        return route(hot, self.cold_files(ds, symbols, start, end, timeframe))

    def hot_chunks(self, ds: TierDataset, start: datetime, end: datetime) -> bool:
        """Whether a hot chunk of ``ds`` overlaps ``[start, end)`` (TimescaleDB's chunk catalog)."""
        schema, table = ds.table.name.split(".")
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.chunks WHERE hypertable_schema = %s"
            " AND hypertable_name = %s AND range_start < %s AND range_end > %s)",
            (schema, table, end, start),
        ).fetchone()
        return bool(row and row[0])

    def cold_files(
        self, ds: TierDataset, symbols: Sequence[str], start: datetime, end: datetime, timeframe: str
    ) -> list[LakeFile]:
        """The manifest's objects that can hold rows of the range, refused when the lake may not
        be read (:func:`check_fallback`). Call it after reading the hot rows (see above)."""
        files = manifest_files(self.conn, dataset=ds.name, timeframe=timeframe, start=start, end=end, symbols=symbols)
        check_fallback(
            files,
            start,
            end,
            self.hot_since(ds.name),
            self.settings.storage.routing.cold_fallback_enabled,
            f"{timeframe} {ds.name} of {list(symbols)[:5]}",
        )
        return files

    def read_tiers(
        self,
        ds: TierDataset,
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        timeframe: str,
        read_hot: Callable[[], pd.DataFrame],
        read_cold: Callable[[Sequence[LakeFile]], pd.DataFrame],
    ) -> list[pd.DataFrame]:
        """The range's rows as parts in merge order (cold, then hot: hot wins a key in both), read
        hot rows first and the manifest second (see above). The hot store is read when a chunk
        overlaps the range, or when nothing does at all (for an empty frame of the right dtypes)."""
        hot = read_hot() if self.hot_chunks(ds, start, end) else None
        files = self.cold_files(ds, symbols, start, end, timeframe)
        parts = [read_cold(files)] if files else []
        if hot is None and not parts:
            hot = read_hot()
        return parts + ([hot] if hot is not None else [])

    # -- cold reads --------------------------------------------------------------------------
    def read_cold(
        self,
        files: Sequence[LakeFile],
        symbols: Sequence[str],
        start: datetime,
        end: datetime,
        extra_filter: pc.Expression | None = None,
    ) -> pa.Table:
        """Rows of ``files`` (manifest order: older first) for ``symbols`` in ``[start, end)``; the
        filter is pushed down to the row groups. Every object is read with the dataset's current
        columns (:attr:`TierDataset.file_columns`), not the first object's: a column added since an
        object was written reads as null there instead of being dropped from every object."""
        if not files:
            raise StorageError("read_cold needs at least one lake file")
        dataset = pads.dataset(
            [f"{self.lake.bucket}/{f.key}" for f in files],
            schema=arrow_schema(DATASETS[files[0].dataset].file_columns),
            filesystem=self.lake.filesystem(),
            format="parquet",
        )
        ts_type = dataset.schema.field("ts").type
        condition = (
            pc.field("symbol").isin(pa.array(sorted(set(symbols)), pa.string()))
            & (pc.field("ts") >= pa.scalar(start, ts_type))
            & (pc.field("ts") < pa.scalar(end, ts_type))
        )
        if extra_filter is not None:
            condition = condition & extra_filter
        try:
            tables = [
                fragment.to_table(filter=condition, schema=dataset.schema) for fragment in dataset.get_fragments()
            ]
        except (OSError, pa.ArrowException) as exc:
            where = f"s3://{self.lake.bucket}/{files[0].key.rsplit('/', 2)[0]}/..."
            raise StorageError(
                f"cannot read {len(files)} lake object(s) under {where}: {exc}; is the S3 store running "
                "(`marketpipe status`)?"
            ) from exc
        return pa.concat_tables(tables)

    # -- bars --------------------------------------------------------------------------------
    def read_bars(
        self,
        symbols: Sequence[str],
        start: object,
        end: object,
        timeframe: str = "1day",
        *,
        adjusted: bool | str = False,
    ) -> pd.DataFrame:
        """Bars of ``symbols`` with ``start <= ts < end`` (canonical BARS frame, sorted by symbol
        and ts) from whichever tiers hold them; ``adjusted``: False/'raw', 'split', True/'all'.

        For 5min, 15min, 1hour and 1day, buckets that no stored bar of the timeframe overlaps come
        from the continuous aggregates of the stored 1-minute bars where the database has them
        (their ``source`` reads ``<vendor>/1min``), once their window has closed by :attr:`now`;
        stored vendor bars win (:mod:`storage.aggregates`).
        Adjustment applies to both alike."""
        adjustment = as_adjustment(adjusted)
        bars = self.read_raw_bars(symbols, start, end, timeframe)
        if adjustment == "raw" or bars.empty:
            return bars
        return apply_adjustment(bars, self.adjustment_factors(symbols), adjustment)

    def adjustment_factors(self, symbols: Sequence[str]) -> pd.DataFrame:
        """The factor steps of ``symbols`` (:func:`storage.corporate_actions.adjustment_factors`),
        the dividends' previous closes read from either tier: what :meth:`read_bars` applies."""
        actions = read_corporate_actions(self.conn, sorted(set(symbols)))
        return adjustment_factors(actions, self._closes_before(actions))

    def bars_per_session(self, symbols: Sequence[str], start: object, end: object, timeframe: str) -> pd.DataFrame:
        """Distinct bars stored per symbol and New York session date in ``[start, end)``, in either
        tier (columns symbol, session_date, bars): what gap detection compares with the calendar.

        The lake counts whatever ``cold_fallback_enabled`` says, because a tiered session is stored,
        not missing; refetching it would put a second copy in the hot store. For an aggregated
        timeframe, the bars :meth:`read_bars` would return are counted (stored bars and the
        aggregate buckets they leave), so a session whose 1-minute bars are stored is no gap of
        its 5-minute bars and no vendor is asked for them.
        """
        table = bar_table(timeframe)
        tf = canonical_timeframe(timeframe)
        lo, hi = to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()
        ds = DATASETS["bars_intraday" if table is BARS_INTRADAY else "bars_daily"]
        where = f"FROM {table.name} WHERE timeframe = %s AND symbol = ANY(%s) AND ts >= %s AND ts < %s"
        args = (tf, list(symbols), lo, hi)
        aggregated = self.has_aggregates(tf)
        # Hot rows before the manifest, each time (see "planning"): a count whose manifest turns out
        # to list objects is read again as keys, followed by the manifest again.
        if not aggregated:  # the common case, nothing tiered: one grouped count in SQL
            rows = self.conn.execute(
                f"SELECT symbol, (ts AT TIME ZONE 'America/New_York')::date, count(*) {where} GROUP BY 1, 2", args
            ).fetchall()
            if not manifest_files(self.conn, dataset=ds.name, timeframe=tf, start=lo, end=hi, symbols=symbols):
                return pd.DataFrame(rows, columns=["symbol", "session_date", "bars"])
        hot = pd.DataFrame(self.conn.execute(f"SELECT symbol, ts {where}", args).fetchall(), columns=["symbol", "ts"])
        files = manifest_files(self.conn, dataset=ds.name, timeframe=tf, start=lo, end=hi, symbols=symbols)
        parts = [hot.astype({"ts": "datetime64[ns, UTC]"})]
        if files:
            cold = self.read_cold(files, symbols, lo, hi).select(["symbol", "ts"]).to_pandas()
            parts.append(cold.astype({"ts": "datetime64[ns, UTC]"}))
        keys = pd.concat(parts).drop_duplicates()
        if aggregated:
            buckets = closed_buckets(read_aggregated_bars(self.conn, symbols, lo, hi, tf), tf, self.now)[
                ["symbol", "ts"]
            ]
            keys = fill_from_aggregate(keys, buckets.astype({"ts": "datetime64[ns, UTC]"}), tf)
        return _per_session(keys)

    def sessions_with_bars(
        self, symbols: Sequence[str], sessions: Sequence[date], timeframe: str, source: str
    ) -> pd.DataFrame:
        """The (symbol, session_date) pairs of ``sessions`` for which ``source`` has at least one
        stored bar of ``timeframe`` (columns symbol, session_date): its rows of the consolidated
        bars or of the vendor table (another vendor's row won the consolidated bar), hot or tiered
        to the lake. What an incremental ingest compares with the range asked for
        (:func:`pipeline.plan.uncovered_starts`). One index probe per symbol-session, not a count:
        a run of a large universe asks about every session of its lookback."""
        columns = ["symbol", "session_date"]
        if not symbols or not sessions:
            return pd.DataFrame(columns=columns)
        table = bar_table(timeframe)
        tf = canonical_timeframe(timeframe)
        days = sorted(set(sessions))
        lo = pd.Timestamp(days[0], tz="America/New_York").tz_convert("UTC").to_pydatetime()
        hi = pd.Timestamp(days[-1] + timedelta(days=1), tz="America/New_York").tz_convert("UTC").to_pydatetime()
        probe = (
            "EXISTS (SELECT 1 FROM {t} b WHERE b.symbol = k.symbol AND b.timeframe = %(tf)s"
            " AND b.ts >= (d.day::timestamp AT TIME ZONE 'America/New_York')"
            " AND b.ts < ((d.day + 1)::timestamp AT TIME ZONE 'America/New_York')"
            " AND b.ts >= %(lo)s AND b.ts < %(hi)s AND b.source = %(source)s)"
        )
        tables = [table.name, *([table.vendor_table] if table.vendor_table else [])]
        query = (
            "SELECT k.symbol, d.day FROM unnest(%(symbols)s::text[]) AS k(symbol) CROSS JOIN unnest(%(days)s::date[])"
            " AS d(day) WHERE " + " OR ".join(probe.format(t=name) for name in tables)
        )
        args = {"symbols": list(symbols), "days": days, "tf": tf, "lo": lo, "hi": hi, "source": source}
        try:
            hot = pd.DataFrame(self.conn.execute(query, args).fetchall(), columns=columns)
        except psycopg.Error as exc:
            raise StorageError(f"cannot read which sessions of {tf} bars {source} has stored: {exc}") from exc
        ds = DATASETS["bars_intraday" if table is BARS_INTRADAY else "bars_daily"]
        files = manifest_files(self.conn, dataset=ds.name, timeframe=tf, start=lo, end=hi, symbols=symbols)
        if not files:
            return hot
        cold = self.read_cold(files, symbols, lo, hi, pc.field("source") == source).select(["symbol", "ts"])
        tiered = _per_session(cold.to_pandas().astype({"ts": "datetime64[ns, UTC]"}))[columns]
        tiered = tiered[tiered["session_date"].isin(set(days))]
        return pd.concat([hot, tiered], ignore_index=True).drop_duplicates(ignore_index=True)

    def read_raw_bars(self, symbols: Sequence[str], start: object, end: object, timeframe: str) -> pd.DataFrame:
        table = bar_table(timeframe)
        tf = canonical_timeframe(timeframe)
        lo, hi = to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()
        ds = DATASETS["bars_intraday" if table is BARS_INTRADAY else "bars_daily"]

        def cold_bars(files: Sequence[LakeFile]) -> pd.DataFrame:
            cold = self.read_cold(files, symbols, lo, hi).to_pandas()
            cold["timeframe"] = tf
            return cold[list(BARS)]

        parts = self.read_tiers(
            ds, symbols, lo, hi, tf, lambda: read_hot_bars(self.conn, symbols, lo, hi, tf), cold_bars
        )
        merged = merge_tiers(parts, ["symbol", "ts"], precedence=self.settings.storage.source_precedence)
        if self.has_aggregates(tf):
            aggregated = closed_buckets(read_aggregated_bars(self.conn, symbols, lo, hi, tf), tf, self.now)
            merged = fill_from_aggregate(merged, aggregated, tf)
        return frame(BARS, {c: merged[c] for c in BARS}, what="routed bars")

    @property
    def now(self) -> datetime:
        """The router's clock: ``now`` given at construction (tests, replays), else the wall clock."""
        return self._now or datetime.now(UTC)

    def has_aggregates(self, timeframe: str) -> bool:
        """Whether bars of ``timeframe`` also come from a continuous aggregate here (full edition,
        routine 70 applied; asked once per router)."""
        if not is_aggregated(timeframe):
            return False
        if self._aggregates is None:
            self._aggregates = aggregates_available(self.conn)
        return self._aggregates

    def _closes_before(self, actions: pd.DataFrame) -> pd.DataFrame:
        """Raw bars before each dividend's ex date (daily, else intraday), read through the router."""
        dividends = actions[actions["action"] == "dividend"]
        if dividends.empty:
            return pd.DataFrame({"symbol": [], "ts": pd.Series([], dtype=TS), "close": []})
        parts = []
        for symbol, rows in dividends.groupby(dividends["symbol"].astype(str)):
            lo, hi = rows["ex_date"].min() - CLOSE_LOOKBACK, rows["ex_date"].max()
            for timeframe in ("1day", *sorted(INTRADAY_TIMEFRAMES)):
                bars = self.read_raw_bars([symbol], lo, hi, timeframe)
                if len(bars):
                    parts.append(bars[["symbol", "ts", "close"]])
                    break
        return pd.concat(parts, ignore_index=True) if parts else self._closes_before(actions.iloc[0:0])

    # -- trades ------------------------------------------------------------------------------
    def read_trades(self, symbols: Sequence[str], start: object, end: object) -> pd.DataFrame:
        """Trades of ``symbols`` with ``start <= ts < end`` (canonical TRADES frame, sorted by the
        natural key symbol, ts, exchange, trade_id) from whichever tiers hold them; a trade in both
        tiers is taken from the hot store."""
        names, lo, hi = check_trade_request(symbols, start, end)
        parts = self.read_tiers(
            DATASETS["trades"],
            names,
            lo,
            hi,
            NO_TIMEFRAME,
            lambda: read_hot_trades(self.conn, names, lo, hi),
            lambda files: self.read_cold(files, names, lo, hi).to_pandas()[list(TRADES)],
        )
        merged = merge_tiers(parts, TRADE_KEY)
        return frame(TRADES, {c: merged[c] for c in TRADES}, what="routed trades")

    # -- features ----------------------------------------------------------------------------
    def read_features(
        self,
        symbols: Sequence[str],
        start: object,
        end: object,
        timeframe: str = "1day",
        feature_set: str | None = None,
        names: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Features like :func:`storage.feature_tables.read_features` (one feature-set version, wide,
        sorted by symbol and ts), from whichever tiers hold them."""
        tf = canonical_timeframe(timeframe)
        lo, hi = to_utc(start).to_pydatetime(), to_utc(end).to_pydatetime()
        # Hot rows before the manifest (see "planning"); the version is the hot store's latest, else
        # the lake's (no hot row of the range existed when the hot store was asked).
        hot_version = feature_set or latest_feature_set(self.conn, symbols, lo, hi, tf)
        hot = read_hot_features(self.conn, symbols, lo, hi, tf, hot_version, names) if hot_version else None
        wide_files = self.cold_files(DATASETS["features"], symbols, lo, hi, tf)
        long_files = self.cold_files(DATASETS["feature_values"], symbols, lo, hi, tf)
        cold_wide = self.read_cold(wide_files, symbols, lo, hi) if wide_files else None
        version = hot_version or _latest_cold(cold_wide)
        standard = [n for n in (names if names is not None else FEATURES) if n in FEATURES]
        parts = []
        if cold_wide is not None and version is not None:
            wide = cold_wide.filter(pc.equal(cold_wide["feature_set"], version)).to_pandas()
            wide["timeframe"] = tf
            wide = wide[["symbol", "timeframe", "ts", "feature_set", *standard]]
            if long_files:
                version_filter = pc.field("feature_set") == version
                long = self.read_cold(long_files, symbols, lo, hi, version_filter).to_pandas()
                long = merge_tiers([long], ["symbol", "ts", "name"])
                if len(long):
                    pivot = long.pivot(index=["symbol", "ts"], columns="name", values="value").reset_index()
                    wide = wide.merge(pivot, on=["symbol", "ts"], how="left")
            parts.append(wide)
        if hot is not None:
            parts.append(hot)
        extra = sorted({c for p in parts for c in p.columns} - {"symbol", "timeframe", "ts", "feature_set", *FEATURES})
        ordered = list(names) if names is not None else [*standard, *extra]
        columns = ["symbol", "timeframe", "ts", "feature_set", *ordered]
        merged = merge_tiers(
            [p.reindex(columns=columns) for p in parts] or [pd.DataFrame(columns=columns)], ["symbol", "ts"]
        )
        return _feature_frame(merged, columns)


def _per_session(keys: pd.DataFrame) -> pd.DataFrame:
    """Distinct (symbol, ts) keys counted per symbol and New York session date."""
    keys = keys.assign(
        symbol=keys["symbol"].astype(str),
        session_date=pd.to_datetime(keys["ts"], utc=True).dt.tz_convert("America/New_York").dt.date,
    )
    counts = keys.groupby(["symbol", "session_date"], as_index=False).size()
    return counts.rename(columns={"size": "bars"})


def _latest_cold(table: pa.Table | None) -> str | None:
    if table is None or table.num_rows == 0:
        return None
    newest = pc.index(table["computed_at"], pc.max(table["computed_at"]))
    return str(table["feature_set"][newest.as_py()].as_py())


def _feature_frame(merged: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One dtype per column whichever tier a row came from."""
    out = pd.DataFrame(index=pd.RangeIndex(len(merged)))
    for c in columns:
        if c in ("symbol", "timeframe", "feature_set"):
            out[c] = merged[c].astype(STR)
        elif c == "ts":
            out[c] = pd.to_datetime(merged[c], utc=True).astype(TS)
        else:
            out[c] = merged[c].to_numpy(dtype=np.float64, na_value=np.nan)
    return out
