"""Record-level validation of bars and gap detection against the NYSE calendar.

Why this shape: a bad bar must never silently reach the hot store, yet a strict pipeline that
throws whole batches away for one bad print loses good data. So every rule is a vectorized
boolean mask over the batch; the masks are folded into one int bitmask per record
(``quality_flags``, bit values in :class:`Rule`, stable because they are stored), and the mode
decides what happens to flagged records: ``strict`` moves them to ``rejected`` (the caller
dead-letters them with their ``reason``), ``lenient`` keeps them in ``accepted`` with their flags
set. Gaps are not record failures (there is no record to fail), so they are reported per
symbol-day in ``coverage``, which is also what the quality score is computed from.

Input: bars as produced by :func:`quality.standardize.standardize_bars`. Order-dependent
rules (returns, stale runs) sort internally, so any row order gives the same flags.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from core import calendar as cal
from core import model
from core.errors import DataQualityError
from quality.standardize import KEY

ValidationMode = Literal["strict", "lenient"]
FLAGS = "quality_flags"
REASON = "reason"
DEFAULT_OUTLIER_THRESHOLD = 10.0
DEFAULT_STALE_RUN = 5
MIN_RETURNS_FOR_OUTLIERS = 20
ENDPOINT_FACTOR = 2.0  # a series end is judged on one return only, so it needs more evidence
SESSION_ANCHORED_SOURCES = frozenset({"yahoo"})  # Yahoo's intraday windows start at the open
_MAD_SCALE = 1.4826  # MAD of a normal sample times this estimates its standard deviation
_MEAN_AD_SCALE = 1.253314  # the same for the mean absolute deviation (used when MAD is 0)


class Rule(enum.IntFlag):
    """One bit per rule in ``quality_flags``. Values are persisted: append, never renumber."""

    OHLC_INCONSISTENT = 1  # high < max(open, close), low > min(open, close) or low > high
    NON_POSITIVE_PRICE = 2  # an OHLC price (or a present vwap) <= 0 or missing
    NEGATIVE_VOLUME = 4  # volume or trade_count < 0
    MISALIGNED_TS = 8  # ts not on the timeframe's grid (minute multiple, midnight New York)
    OUTSIDE_SESSION = 16  # holiday, weekend, or the window misses the regular session (half days)
    DUPLICATE_CONFLICT = 32  # same (symbol, timeframe, ts) with different values
    OUTLIER_RETURN = 64  # robust z-score of the log return above the threshold
    STALE_PRICE = 128  # part of a run of >= N identical closes with zero volume
    # Not a validation rule: the bar's window had not closed when it was served (a stream's or a
    # vendor's forming bar, today's daily bar before the close). Stored so readers see it form; it
    # never advances a watermark and is rewritten without the bit once final.
    PROVISIONAL = model.PROVISIONAL_FLAG
    FUTURE_TS = 512  # the window starts after the instant the batch was served: no vendor has it yet

    @property
    def code(self) -> str:
        return (self.name or str(int(self))).lower()


RULES: tuple[Rule, ...] = tuple(Rule)
#: Always rejected, in lenient mode too: stored, a bar from the future would advance a watermark
#: past every bar still to come.
ALWAYS_REJECTED = Rule.FUTURE_TS


@dataclass(frozen=True)
class ValidationResult:
    """What validation decided about one batch.

    ``accepted``/``rejected`` carry the model's columns plus ``quality_flags`` (int64 bitmask);
    ``rejected`` also has ``reason`` (comma-joined rule codes). ``coverage`` has one row per
    symbol-day: ``expected`` bars by the calendar, ``records`` received, ``present`` distinct
    expected stamps received, ``valid`` of those with no flag, ``flagged`` records with a flag,
    ``off_grid`` records misaligned or outside the session, ``missing`` = expected - present.
    """

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    coverage: pd.DataFrame
    rule_counts: dict[str, int]
    mode: ValidationMode
    records: int
    thresholds: dict[str, float] = field(default_factory=dict)

    def by_symbol(self) -> dict[str, ValidationResult]:
        """The result of each symbol of the batch (those with records or coverage rows), as its
        validation alone would have given it when the batch was validated with ``series_spans``:
        its records and coverage rows, and its rule counts from their flags (each rule is a bit)."""
        parts = {
            name: _split(frame)
            for name, frame in (("accepted", self.accepted), ("rejected", self.rejected), ("coverage", self.coverage))
        }
        names = sorted({str(name) for part in parts.values() for name in part})
        # One empty frame of each kind for every symbol without rows of it (copy-on-write: shared safely).
        empty = {kind: _empty_like(getattr(self, kind)) for kind in parts}
        out = {}
        for name in names:
            accepted, rejected, coverage = (parts[kind].get(name, empty[kind]) for kind in parts)
            flags = np.concatenate([accepted[FLAGS].to_numpy(np.int64), rejected[FLAGS].to_numpy(np.int64)])
            out[name] = ValidationResult(
                accepted=accepted,
                rejected=rejected,
                coverage=coverage,
                rule_counts={
                    code: int(np.count_nonzero(flags & Rule[code.upper()].value)) for code in self.rule_counts
                },
                mode=self.mode,
                records=len(flags),
                thresholds=dict(self.thresholds),
            )
        return out

    @property
    def gaps(self) -> pd.DataFrame:
        """Symbol-days with missing bars (the gap report), most missing first."""
        gaps = self.coverage[self.coverage["missing"] > 0]
        return gaps.sort_values(["missing", "symbol", "session_date"], ascending=[False, True, True], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Rules: each returns a boolean numpy array, True where the record fails


def check_ohlc(bars: pd.DataFrame) -> np.ndarray:
    """High must bound open and close from above, low from below. Missing prices are left to
    :func:`check_prices` so that one defect is reported once."""
    o, h, lo, c = (bars[name].to_numpy(np.float64) for name in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        return (h < np.fmax(o, c)) | (lo > np.fmin(o, c)) | (lo > h)


def check_prices(bars: pd.DataFrame) -> np.ndarray:
    """Every OHLC price positive and present; vwap positive when the vendor sent one."""
    prices = bars[["open", "high", "low", "close"]].to_numpy(np.float64)
    vwap = bars["vwap"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        return ~(prices > 0).all(axis=1) | (vwap <= 0)


def check_volume(bars: pd.DataFrame) -> np.ndarray:
    counts = bars["trade_count"].fillna(0).to_numpy(np.int64)
    return (bars["volume"].to_numpy(np.int64) < 0) | (counts < 0)


def check_duplicates(bars: pd.DataFrame) -> np.ndarray:
    """Every record of a key that appears more than once. Exact duplicates were removed by
    standardization, so what remains disagrees on some value and no record can be trusted."""
    return bars.duplicated(KEY, keep=False).to_numpy()


def anchors(bars: pd.DataFrame, anchor: cal.Anchor | None = None) -> np.ndarray:
    """The grid anchor of each record: ``anchor`` if given, else by source (Yahoo: session)."""
    if anchor is not None:
        return np.full(len(bars), anchor, dtype=object)
    session = bars["source"].isin(list(SESSION_ANCHORED_SOURCES)).fillna(False).to_numpy(bool)
    return np.where(session, "session", "clock").astype(object)


def check_timestamps(
    bars: pd.DataFrame,
    schedule: cal.SessionSchedule,
    anchor: cal.Anchor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(misaligned, outside_session) masks against the calendar, per timeframe and anchor."""
    ts_ns = _ts_ns(bars)
    session = schedule.session_index(bars["ts"])
    misaligned = np.zeros(len(bars), dtype=bool)
    outside = np.zeros(len(bars), dtype=bool)
    row_anchor = anchors(bars, anchor)
    timeframe_code, timeframe_labels = _codes(bars["timeframe"])
    for code, timeframe in enumerate(timeframe_labels):
        for grid in ("clock", "session"):
            rows = np.flatnonzero((timeframe_code == code) & (row_anchor == grid))
            if not len(rows):
                continue
            misaligned[rows] = ~cal.aligned(ts_ns[rows], session[rows], schedule, timeframe, grid)
            outside[rows] = ~cal.in_session(ts_ns[rows], session[rows], schedule, timeframe)
    return misaligned, outside


def check_outliers(
    bars: pd.DataFrame, threshold: float = DEFAULT_OUTLIER_THRESHOLD, corporate_actions: pd.DataFrame | None = None
) -> np.ndarray:
    """Bars whose log return is an outlier by a robust z-score, per (symbol, timeframe).

    z = (r - median) / (1.4826 * MAD), falling back to 1.2533 * mean absolute deviation when
    more than half the returns equal the median, and floored at one price increment relative to
    the price (cent-rounded minute bars of a cheap stock move in whole ticks), so one bad print
    cannot hide itself by inflating a standard deviation and a one-tick move is never an outlier.
    Intraday returns are taken within a session only: the overnight gap is a different
    distribution and would flag every open.
    A bad print moves the price away and back, so an inner bar is flagged only when both its
    return and the next one are outliers of opposite sign; a lasting jump (news, a gap) flags
    nothing. A series end (for intraday bars, a session's first or last bar) has one side only and
    needs twice the threshold on it, since a genuine jump looks the same from one side. Split ex-dates, when
    ``corporate_actions`` (model.CORPORATE_ACTIONS) are given, have the split ratio taken out of
    the return. Series with fewer than 20 returns are not judged (too few for a median).
    """
    n = len(bars)
    if n < 3:
        return np.zeros(n, dtype=bool)
    order, group, segment = _ordering(bars, by_session=True)
    close = bars["close"].to_numpy(np.float64)[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.where(close > 0, np.log(close), np.nan)
    ret = np.full(n, np.nan)
    same = segment[1:] == segment[:-1]
    ret[1:] = np.where(same, log_close[1:] - log_close[:-1], np.nan)
    if corporate_actions is not None and len(corporate_actions):
        # only the return into a split's ex date crosses it: the first bar of that day (a daily bar;
        # intraday, a session's first return is not taken), never the minutes within the session
        days = cal.local_dates(bars["ts"])[order]
        into_day = np.ones(n, dtype=bool)
        into_day[1:] = days[1:] != days[:-1]
        ret = ret + np.where(into_day, _split_log_ratio(bars, corporate_actions)[order], 0.0)
    median = _per_group(ret, group, "median")
    deviation = ret - median
    absdev = np.abs(deviation)
    mad = _per_group(absdev, group, "median") * _MAD_SCALE
    mean_ad = _per_group(absdev, group, "mean") * _MEAN_AD_SCALE
    # One price increment (a cent at or above $1, 0.0001 below) relative to the typical price:
    # cent-rounded quotes of a $3 stock move in 0.3 % steps, which must not read as outliers.
    with np.errstate(divide="ignore", invalid="ignore"):
        tick_return = np.where(close >= 1.0, 0.01, 0.0001) / close
    tick_floor = _per_group(tick_return, group, "median")
    scale = np.fmax(np.where(mad > 0, mad, mean_ad), tick_floor)
    count = _per_group(ret, group, "count")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where((scale > 0) & (count >= MIN_RETURNS_FOR_OUTLIERS), deviation / scale, np.nan)
    big = np.abs(z) > threshold  # NaN compares False
    huge = np.abs(z) > ENDPOINT_FACTOR * threshold
    has_back = ~np.isnan(ret)
    next_big = np.zeros(n, dtype=bool)
    next_big[:-1] = big[1:] & same
    next_huge = np.zeros(n, dtype=bool)
    next_huge[:-1] = huge[1:] & same
    has_next = np.zeros(n, dtype=bool)
    has_next[:-1] = same & ~np.isnan(ret[1:])
    reverses = np.zeros(n, dtype=bool)
    reverses[:-1] = np.sign(deviation[:-1]) != np.sign(deviation[1:])
    inner_spike = big & next_big & reverses & has_next
    last_bar = huge & ~has_next
    spike_next = np.zeros(n, dtype=bool)
    spike_next[:-1] = inner_spike[1:] & same
    first_bar = ~has_back & next_huge & ~spike_next
    flagged = inner_spike | last_bar | first_bar
    out = np.zeros(n, dtype=bool)
    out[order] = flagged
    return out


def _per_group(values: np.ndarray, group: np.ndarray, how: Literal["median", "mean", "count"]) -> np.ndarray:
    """``how`` of ``values`` per ``group`` (NaN skipped), broadcast back to each row: pandas'
    ``groupby(group).transform(how)``, in numpy when there is one group (one symbol's page, what the
    processing stage validates: ~0.3 ms a transform saved)."""
    if not len(group) or (group != group[0]).any():
        return pd.Series(values).groupby(group).transform(how).to_numpy(np.float64)
    present = values[~np.isnan(values)]
    if how == "count":
        stat = float(len(present))
    elif not len(present):
        stat = np.nan
    else:
        stat = float(np.median(present)) if how == "median" else float(present.mean())
    return np.full(len(values), stat)


def check_stale(bars: pd.DataFrame, run: int = DEFAULT_STALE_RUN) -> np.ndarray:
    """Bars in a run of at least ``run`` consecutive bars with zero volume and the same close.

    A vendor that keeps repeating the last price with nothing traded is serving a frozen feed; a
    single zero-volume bar is legitimate (a quiet minute) and is not flagged.
    """
    n = len(bars)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order, _, group = _ordering(bars, by_session=False)
    zero = bars["volume"].to_numpy(np.int64)[order] == 0
    close = bars["close"].to_numpy(np.float64)[order]
    continues = np.zeros(n, dtype=bool)
    continues[1:] = zero[1:] & zero[:-1] & (close[1:] == close[:-1]) & (group[1:] == group[:-1])
    run_id = np.cumsum(~continues)
    length = np.bincount(run_id)[run_id]
    out = np.zeros(n, dtype=bool)
    out[order] = zero & (length >= run)
    return out


def window_end_ns(bars: pd.DataFrame, schedule: cal.SessionSchedule) -> np.ndarray:
    """When each bar's window closes (UTC ns): an intraday bar at its width, cut at its session's
    close (a session-anchored last hour ends at the close); a daily bar at its session's close.
    A bar on no session of ``schedule`` ends at its width (a day for daily bars)."""
    ts_ns = _ts_ns(bars)
    session = schedule.session_index(bars["ts"]) if len(bars) else np.empty(0, np.int64)
    on_session = session >= 0
    close = np.where(on_session, schedule.close_ns[np.where(on_session, session, 0)] if len(schedule) else 0, 0)
    end = np.empty(len(bars), dtype=np.int64)
    timeframe_code, timeframe_labels = _codes(bars["timeframe"])
    for code, timeframe in enumerate(timeframe_labels):
        rows = timeframe_code == code
        width = cal.bar_width_ns(str(timeframe))
        if width is None:
            end[rows] = np.where(on_session[rows], close[rows], ts_ns[rows] + cal.NS_PER_DAY)
        else:
            nominal = ts_ns[rows] + width
            end[rows] = np.where(on_session[rows], np.minimum(nominal, close[rows]), nominal)
    return end


def check_window(
    bars: pd.DataFrame, schedule: cal.SessionSchedule, served_at_ns: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(future, forming) against the instant the batch (or, an array, each row) was served: a
    window starting after it is from the future (an error); one that had started but not closed
    was still forming (provisional)."""
    ts_ns = _ts_ns(bars)
    future = ts_ns > served_at_ns
    forming = ~future & (window_end_ns(bars, schedule) > served_at_ns)
    return future, forming


def rule_masks(
    bars: pd.DataFrame,
    schedule: cal.SessionSchedule,
    *,
    anchor: cal.Anchor | None = None,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    stale_run: int = DEFAULT_STALE_RUN,
    corporate_actions: pd.DataFrame | None = None,
) -> dict[Rule, np.ndarray]:
    """Every rule's mask over ``bars`` (True = the record fails the rule)."""
    misaligned, outside = check_timestamps(bars, schedule, anchor)
    return {
        Rule.OHLC_INCONSISTENT: check_ohlc(bars),
        Rule.NON_POSITIVE_PRICE: check_prices(bars),
        Rule.NEGATIVE_VOLUME: check_volume(bars),
        Rule.MISALIGNED_TS: misaligned,
        Rule.OUTSIDE_SESSION: outside,
        Rule.DUPLICATE_CONFLICT: check_duplicates(bars),
        Rule.OUTLIER_RETURN: check_outliers(bars, outlier_threshold, corporate_actions),
        Rule.STALE_PRICE: check_stale(bars, stale_run),
    }


def combine(masks: Mapping[Rule, np.ndarray], length: int) -> np.ndarray:
    """Fold the masks into the int64 ``quality_flags`` bitmask."""
    flags = np.zeros(length, dtype=np.int64)
    for rule, mask in masks.items():
        flags |= np.where(mask, np.int64(rule.value), np.int64(0))
    return flags


def describe_flags(flags: pd.Series | np.ndarray) -> pd.Series:
    """Reason codes of each bitmask, comma-joined in bit order (``"ohlc_inconsistent,stale_price"``).

    Mapped per distinct bitmask value, of which a batch has a handful.
    """
    values = pd.Series(np.asarray(flags, dtype=np.int64))
    mapping = {int(v): ",".join(rule.code for rule in RULES if int(v) & rule.value) for v in values.unique()}
    return values.map(mapping).astype(model.STR)


def _split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A frame's rows by symbol, each part indexed from 0 (one group-by for the batch)."""
    if frame.empty:
        return {}
    return {str(name): part.reset_index(drop=True) for name, part in frame.groupby("symbol", sort=False, observed=True)}


def _empty_like(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[:0].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The batch


def validate_bars(
    bars: pd.DataFrame,
    *,
    mode: ValidationMode = "strict",
    start: Any = None,
    end: Any = None,
    symbols: Iterable[str] | None = None,
    timeframe: str | None = None,
    schedule: cal.SessionSchedule | None = None,
    anchor: cal.Anchor | None = None,
    outlier_threshold: float = DEFAULT_OUTLIER_THRESHOLD,
    stale_run: int = DEFAULT_STALE_RUN,
    corporate_actions: pd.DataFrame | None = None,
    served_at: Any = None,
    series_spans: bool = False,
) -> ValidationResult:
    """Validate a standardized batch of bars.

    ``served_at`` is the instant the vendor served the batch (its clock, see
    :func:`sources.http.served_at`; default: now). A bar whose window starts after it is from the
    future and always rejected (``future_ts``); a bar whose window had not closed by then is
    accepted with the ``provisional`` bit (256), which is no defect: it never advances a
    watermark, so the next run fetches it again and stores it final. Coverage expects only the
    windows closed by ``served_at``.

    ``mode`` is ``settings.quality.validation_mode``. ``start``/``end`` (dates, inclusive) and
    ``symbols`` (and ``timeframe``, needed when the batch may be empty) say what the batch was
    asked for, so a missing day or a symbol that returned nothing is a gap; without them the
    expected range is what the batch itself spans, per timeframe. ``anchor`` forces the intraday
    grid (default: by source, see :func:`anchors`).

    ``series_spans`` validates a batch of series as each alone: without ``start``/``end`` each
    symbol is expected over the sessions its own bars span (not the whole batch's), and
    ``served_at`` may map each symbol to its own instant. Then :meth:`ValidationResult.by_symbol`
    gives every symbol the result its validation alone would have given (the processing stage
    validates a batch of collected symbols at once: one call instead of one per symbol).

    In ``strict`` mode every flagged record is rejected. In ``lenient`` mode flagged records stay
    accepted with their flags, except that of a conflicting key only the last record received is
    kept: the hot store's upsert cannot take one key twice in a batch.
    """
    if mode not in ("strict", "lenient"):
        raise DataQualityError(f"validation_mode {mode!r} is not one of 'strict', 'lenient'")
    if outlier_threshold <= 0 or stale_run < 2:
        raise DataQualityError(
            f"outlier_threshold must be > 0 (got {outlier_threshold}) and stale_run >= 2 (got {stale_run})"
        )
    missing = [name for name in model.BARS if name not in bars.columns]
    if missing:
        raise DataQualityError(f"bars lack column(s) {missing}; run standardize_bars first")
    frame = bars[list(model.BARS)].reset_index(drop=True)
    symbols = list(symbols) if symbols is not None else None
    if schedule is None:
        schedule = _schedule_around(frame, start, end)
    if isinstance(served_at, Mapping):
        now_ns = int(pd.Timestamp.now("UTC").value)
        served_by_symbol = {model.normalize_symbol(k): int(pd.Timestamp(v).value) for k, v in served_at.items()}
        codes, labels = _codes(frame["symbol"])
        by_label = np.array([served_by_symbol.get(str(label), now_ns) for label in labels], dtype=np.int64)
        served_rows: int | np.ndarray = by_label[codes] if len(frame) else now_ns
        asked = {model.normalize_symbol(name) for name in symbols or ()}
        served_at_ns: int | dict[str, int] = {
            name: served_by_symbol.get(name, now_ns) for name in {*map(str, labels), *asked, *served_by_symbol}
        }
    else:
        served_at_ns = int(pd.Timestamp(served_at if served_at is not None else pd.Timestamp.now("UTC")).value)
        served_rows = served_at_ns
    future, forming = check_window(frame, schedule, served_rows)
    masks = rule_masks(
        frame,
        schedule,
        anchor=anchor,
        outlier_threshold=outlier_threshold,
        stale_run=stale_run,
        corporate_actions=corporate_actions,
    )
    masks[Rule.FUTURE_TS] = future
    flags = combine(masks, len(frame))
    frame[FLAGS] = flags | np.where(forming, np.int64(Rule.PROVISIONAL.value), np.int64(0))
    if mode == "strict":
        reject = flags != 0
    else:
        reject = masks[Rule.DUPLICATE_CONFLICT] & frame.duplicated(KEY, keep="last").to_numpy()
        reject |= (flags & ALWAYS_REJECTED.value) != 0
    accepted = frame[~reject].reset_index(drop=True)
    rejected = frame[reject].reset_index(drop=True)
    rejected[REASON] = pd.array(describe_flags(rejected[FLAGS]).to_numpy(), dtype="str")  # str when empty too
    coverage = symbol_day_coverage(
        frame,
        schedule,
        masks,
        start=start,
        end=end,
        symbols=symbols,
        timeframe=timeframe,
        anchor=anchor,
        served_at_ns=served_at_ns,
        series_spans=series_spans,
    )
    return ValidationResult(
        accepted=accepted,
        rejected=rejected,
        coverage=coverage,
        rule_counts={rule.code: int(mask.sum()) for rule, mask in masks.items()},
        mode=mode,
        records=len(frame),
        thresholds={"outlier_threshold": float(outlier_threshold), "stale_run": float(stale_run)},
    )


def symbol_day_coverage(
    bars: pd.DataFrame,
    schedule: cal.SessionSchedule,
    masks: Mapping[Rule, np.ndarray],
    *,
    start: Any = None,
    end: Any = None,
    symbols: Iterable[str] | None = None,
    timeframe: str | None = None,
    anchor: cal.Anchor | None = None,
    served_at_ns: int | Mapping[str, int] | None = None,
    series_spans: bool = False,
) -> pd.DataFrame:
    """Per (symbol, timeframe, session_date): expected bars by the calendar against what came.

    With ``served_at_ns`` only the windows closed by then are expected (none of a session still
    to open, the ended ones of the session under way), and those that came while still open; a
    mapping gives each symbol its own instant (symbols it lacks: now). With ``series_spans`` each
    symbol is expected over the sessions of its own bars (not the batch's) when ``start``/``end``
    do not say.

    ``session_date`` is the New York date as midnight UTC (how the model stores dates). Records
    on a date that is no session (a holiday) get a row with ``expected`` 0, so they still count
    against the day they claim.

    Counted with numpy over one int64 key per (symbol, timeframe, day), ranked so that the keys
    sort like the output: a pandas group-by and join per call cost ~10x more on one symbol's
    frame, which is what the processing stage validates.
    """
    flags = combine(masks, len(bars))
    off_grid = masks[Rule.MISALIGNED_TS] | masks[Rule.OUTSIDE_SESSION]
    symbol_code, symbol_labels = _codes(bars["symbol"])
    timeframe_code, timeframe_labels = _codes(bars["timeframe"])
    day = cal.local_dates(bars["ts"]).astype(np.int64) if len(bars) else np.empty(0, np.int64)
    timeframes = list(timeframe_labels)
    if timeframe is not None and model.canonical_timeframe(timeframe) not in timeframes:
        timeframes.append(model.canonical_timeframe(timeframe))
    row_anchor = anchors(bars, anchor)
    wanted = sorted({model.normalize_symbol(s) for s in symbols}) if symbols is not None else []
    first = cal.as_date(start) if start is not None else None
    last = cal.as_date(end) if end is not None else None
    parts = [_expected_empty()]
    for code, label in enumerate(timeframes):
        mine = timeframe_code == code  # all False for a timeframe only asked for
        names = sorted(set(symbol_labels[np.unique(symbol_code[mine])]) | set(wanted))
        grid = anchor or ("session" if mine.any() and (row_anchor[mine] == "session").all() else "clock")
        if not series_spans and not isinstance(served_at_ns, Mapping):
            seen = np.unique(day[mine & ~off_grid]).astype("datetime64[D]")
            parts.append(_expected_for(schedule, label, first, last, seen, names, grid, served_at_ns))
            continue
        # Symbols alike (the same span of sessions seen, the same serving instant) share one call.
        alike: dict[tuple[Any, Any, int | None], list[str]] = {}
        on_grid = mine & ~off_grid
        code_of = {str(name): at for at, name in enumerate(symbol_labels)}
        batch_seen = np.unique(day[on_grid]).astype("datetime64[D]")
        for name in names:
            if series_spans:  # a symbol without rows matches no code
                seen = np.unique(day[on_grid & (symbol_code == code_of.get(name, -2))]).astype("datetime64[D]")
            else:
                seen = batch_seen
            seen = seen[np.isin(seen, schedule.dates)]
            seen_span = (seen.min(), seen.max()) if len(seen) else (None, None)
            served = served_at_ns.get(name) if isinstance(served_at_ns, Mapping) else served_at_ns
            alike.setdefault((*seen_span, served), []).append(name)
        for (lo_day, hi_day, served), group in alike.items():
            bounds = [lo_day, hi_day] if lo_day is not None else []
            seen = np.array(bounds, dtype="datetime64[D]")
            parts.append(_expected_for(schedule, label, first, last, seen, group, grid, served))
    expected = pd.concat(parts, ignore_index=True)

    # Ranks of the labels in output order; a key (symbol rank, timeframe rank, day) as one int64.
    all_symbols = sorted(set(symbol_labels.tolist()) | set(expected["symbol"].tolist()))
    all_timeframes = sorted(set(timeframes) | set(expected["timeframe"].tolist()))
    symbol_rank = {name: i for i, name in enumerate(all_symbols)}
    timeframe_rank = {name: i for i, name in enumerate(all_timeframes)}
    exp_day = expected["day"].to_numpy().astype("datetime64[D]").astype(np.int64)
    lo = int(min(day.min(initial=0), exp_day.min(initial=0)))
    span = int(max(day.max(initial=0), exp_day.max(initial=0))) - lo + 1

    def key(symbol_ranks: np.ndarray, timeframe_ranks: np.ndarray, days: np.ndarray) -> np.ndarray:
        return (symbol_ranks * len(all_timeframes) + timeframe_ranks) * span + (days - lo)

    row_key = key(
        np.array([symbol_rank[n] for n in symbol_labels], np.int64)[symbol_code],
        np.array([timeframe_rank[t] for t in timeframe_labels], np.int64)[timeframe_code],
        day,
    )
    exp_key = key(
        np.array([symbol_rank[n] for n in expected["symbol"]], np.int64),
        np.array([timeframe_rank[t] for t in expected["timeframe"]], np.int64),
        exp_day,
    )
    keys, inverse = np.unique(np.concatenate([exp_key, row_key]), return_inverse=True)
    exp_at, row_at = inverse[: len(exp_key)], inverse[len(exp_key) :]
    n = len(keys)
    counts = {
        "expected": np.bincount(exp_at, weights=expected["expected"].to_numpy(np.int64), minlength=n),
        "records": np.bincount(row_at, minlength=n),
        "flagged": np.bincount(row_at, weights=flags != 0, minlength=n),
        "off_grid": np.bincount(row_at, weights=off_grid, minlength=n),
    }
    # present / valid: distinct on-grid stamps per key; a stamp is valid when all its records are.
    on = ~off_grid
    stamp_group, stamp_ts, stamp_ok = row_at[on], _ts_ns(bars)[on], flags[on] == 0
    order = np.lexsort((stamp_ts, stamp_group))
    stamp_group, stamp_ts, stamp_ok = stamp_group[order], stamp_ts[order], stamp_ok[order]
    new_stamp = np.ones(len(stamp_group), dtype=bool)
    new_stamp[1:] = (stamp_group[1:] != stamp_group[:-1]) | (stamp_ts[1:] != stamp_ts[:-1])
    starts = np.flatnonzero(new_stamp)
    all_ok = np.minimum.reduceat(stamp_ok, starts) if len(starts) else np.empty(0, bool)
    counts["present"] = np.bincount(stamp_group[starts], minlength=n)
    counts["valid"] = np.bincount(stamp_group[starts], weights=all_ok, minlength=n)
    if served_at_ns is not None:  # (with a mapping every symbol has an instant: now by default)
        # A window under way that came (a forming bar, or one from the future) is expected too: it
        # exists, and a future one is judged by its flag, not hidden as a surplus.
        counts["expected"] = np.maximum(counts["expected"], counts["present"])

    ranks, day_of = np.divmod(keys, span)
    symbol_of, timeframe_of = np.divmod(ranks, len(all_timeframes))
    out = pd.DataFrame(
        {
            "symbol": pd.array(np.array(all_symbols, dtype=object)[symbol_of], dtype=model.STR),
            "timeframe": pd.array(np.array(all_timeframes, dtype=object)[timeframe_of], dtype=model.STR),
            "session_date": pd.DatetimeIndex(
                (day_of + lo).astype("datetime64[D]").astype("datetime64[ns]")
            ).tz_localize("UTC"),
            **{
                name: counts[name].astype(np.int64)
                for name in ("expected", "records", "present", "valid", "flagged", "off_grid")
            },
        }
    )
    out["missing"] = (out["expected"] - out["present"]).clip(lower=0)
    return out


def missing_bars(
    bars: pd.DataFrame,
    schedule: cal.SessionSchedule,
    timeframe: str,
    symbols: Iterable[str],
    anchor: cal.Anchor = "clock",
) -> pd.DataFrame:
    """Every expected (symbol, ts) of ``timeframe`` in ``schedule`` that ``bars`` lacks, for gap
    repair: the refetch requests are built from these stamps."""
    expected_ns, _ = cal.expected_bar_ns(schedule, timeframe, anchor)
    names = sorted({model.normalize_symbol(s) for s in symbols})
    canonical = model.canonical_timeframe(timeframe)
    want = pd.MultiIndex.from_product([names, expected_ns], names=["symbol", "ts"])
    mine = bars[bars["timeframe"] == canonical]
    have = pd.MultiIndex.from_arrays([mine["symbol"].to_numpy(object), _ts_ns(mine)], names=["symbol", "ts"])
    lacking = want.difference(have, sort=False)
    result = pd.DataFrame(
        {
            "symbol": pd.Series(lacking.get_level_values("symbol"), dtype=model.STR),
            "timeframe": pd.Series([canonical] * len(lacking), dtype=model.STR),
            "ts": pd.to_datetime(np.asarray(lacking.get_level_values("ts"), dtype=np.int64), utc=True),
        }
    )
    return result.sort_values(["symbol", "ts"], ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Internals


def _ts_ns(bars: pd.DataFrame) -> np.ndarray:
    return bars["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64) if len(bars) else np.empty(0, np.int64)


def _ordering(bars: pd.DataFrame, *, by_session: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sort order by symbol/timeframe/ts, series id per sorted row, segment id per sorted row).

    A series is (symbol, timeframe); with ``by_session`` an intraday series is cut into one
    segment per session date, daily series stay whole.
    """
    symbol_code, _ = _codes(bars["symbol"])
    timeframe_code, timeframe_labels = _codes(bars["timeframe"])
    ts = _ts_ns(bars)
    order = np.lexsort((ts, timeframe_code, symbol_code))
    series = symbol_code[order] * (len(timeframe_labels) + 1) + timeframe_code[order]
    if not by_session:
        return order, series, series
    intraday = np.array([model.parse_timeframe(str(t))[1] in ("min", "hour") for t in timeframe_labels], dtype=bool)
    day = cal.local_dates(bars["ts"]).astype(np.int64)[order]
    segment_day = np.where(intraday[timeframe_code[order]], day, 0)
    # Sorted by series then ts, so each segment is one contiguous run of rows.
    boundary = np.ones(len(order), dtype=bool)
    boundary[1:] = (series[1:] != series[:-1]) | (segment_day[1:] != segment_day[:-1])
    return order, series, np.cumsum(boundary)


def _split_log_ratio(bars: pd.DataFrame, corporate_actions: pd.DataFrame) -> np.ndarray:
    """log(new_rate / old_rate) on the bars dated on a split's ex-date, 0 elsewhere: what a raw
    price series drops by on that day, to be added back before judging the return."""
    splits = corporate_actions[corporate_actions["action"] == "split"]
    if not len(splits):
        return np.zeros(len(bars))
    ratio = (
        pd.DataFrame(
            {
                "symbol": model.normalize_symbols(splits["symbol"]).to_numpy(object),
                "day": splits["ex_date"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[D]"),
                "log_ratio": np.log(splits["new_rate"].to_numpy(np.float64) / splits["old_rate"].to_numpy(np.float64)),
            }
        )
        .groupby(["symbol", "day"], as_index=False)["log_ratio"]
        .sum()
    )
    keys = pd.DataFrame({"symbol": bars["symbol"].to_numpy(object), "day": cal.local_dates(bars["ts"])})
    merged = keys.merge(ratio, on=["symbol", "day"], how="left")
    return merged["log_ratio"].fillna(0.0).to_numpy(np.float64)


def _schedule_around(bars: pd.DataFrame, start: Any, end: Any) -> cal.SessionSchedule:
    days = cal.local_dates(bars["ts"]) if len(bars) else np.empty(0, dtype="datetime64[D]")
    bounds = [pd.Timestamp(d).date() for d in (days.min(), days.max())] if len(days) else []
    if start is not None:
        bounds.append(cal.as_date(start))
    if end is not None:
        bounds.append(cal.as_date(end))
    if not bounds:
        return cal.empty_schedule()
    return cal.nyse_sessions(min(bounds), max(bounds))


def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the distinct labels of a string column (Arrow-backed: no per-row objects)."""
    codes, labels = pd.factorize(column)
    return codes.astype(np.int64), np.asarray(labels, dtype=object)


def _closed_windows(
    schedule: cal.SessionSchedule, timeframe: str, first: np.ndarray, count: np.ndarray, at_ns: int
) -> np.ndarray:
    """Of each session's ``count`` windows from ``first``, how many had closed by ``at_ns``."""
    closed = schedule.close_ns <= at_ns
    width = cal.bar_width_ns(timeframe)
    if width is None:
        return np.where(closed, count, 0)
    ended = np.clip((at_ns - first) // width, 0, count)
    return np.where(closed, count, ended).astype(np.int64)


def _expected_empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": np.empty(0, object),
            "timeframe": np.empty(0, object),
            "day": np.empty(0, "datetime64[D]"),
            "expected": np.empty(0, np.int64),
        }
    )


def _expected_for(
    schedule: cal.SessionSchedule,
    timeframe: str,
    first: Any,
    last: Any,
    seen: np.ndarray,
    names: list[str],
    grid: cal.Anchor,
    served_at_ns: int | None = None,
) -> pd.DataFrame:
    """Expected bars per (symbol, day) of one timeframe over the sessions from the requested start
    (or the first session seen) to the requested end (or the last seen), whichever is wider."""
    seen = seen[np.isin(seen, schedule.dates)]
    bounds_lo = [np.datetime64(first, "D")] if first is not None else []
    bounds_hi = [np.datetime64(last, "D")] if last is not None else []
    if len(seen):
        bounds_lo.append(seen.min())
        bounds_hi.append(seen.max())
    if not bounds_lo or not bounds_hi or not names:
        return _expected_empty()
    lo = int(np.searchsorted(schedule.dates, min(bounds_lo), side="left"))
    hi = int(np.searchsorted(schedule.dates, max(bounds_hi), side="right"))
    first_start, count = cal.window_starts(schedule, timeframe, grid)
    if served_at_ns is not None:
        count = _closed_windows(schedule, timeframe, first_start, count, served_at_ns)
    days = schedule.dates[lo:hi]
    return pd.DataFrame(
        {
            "symbol": np.repeat(np.array(names, dtype=object), len(days)),
            "timeframe": timeframe,
            "day": np.tile(days, len(names)),
            "expected": np.tile(count[lo:hi], len(names)),
        }
    )
