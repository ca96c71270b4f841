"""Per-symbol news sentiment features over trailing windows, point in time (pure, numba).

For every bar the features read only the items published at or before the bar's close: an item
published one nanosecond after a bar closes first counts for the next bar. An item the vendor
updated counts as the version known at the close (its symbols and sentiment; the version known
from its ``updated_at`` until the next version's): a 15:30 update does not reach a 10:06 bar, which
sees the 10:05 version, and an item first stored in a version updated after the close is not seen
at all (its earlier text was never known here). Per window (24 h and
72 h before the close): the number of items and their mean sentiment; over the longest window, a
time-decayed mean (weights halve every ``half_life_hours`` of age at the close). A bar with no
item in a window has count 0 and NaN means (no news is not neutral news).

The close of a bar: ts + its width for intraday bars (any ``<n>min`` or ``<n>hour``); the session's
close (16:00 New York, 13:00 on half days) for a daily bar, whose ts is the session's midnight in
New York. Bars of any other timeframe are refused (:func:`core.calendar.bar_width_ns`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd

from core.calendar import bar_width_ns, nyse_sessions
from core.errors import DataQualityError, PermanentSourceError, RequestError

NEWS_FEATURE_SET = "news_sentiment_v1"
WINDOWS_HOURS: tuple[int, ...] = (24, 72)
HALF_LIFE_HOURS = 12.0
HOUR_NS = 3_600 * 10**9
NEVER_NS = np.iinfo(np.int64).max  # the superseded time of a version nothing replaced


def feature_names(windows: Sequence[int] = WINDOWS_HOURS) -> list[str]:
    names = []
    for w in windows:
        names += [f"news_count_{w}h", f"news_sentiment_mean_{w}h"]
    return [*names, "news_sentiment_decayed"]


@numba.njit(cache=True)
def _window(
    close_ns: np.ndarray,
    item_ns: np.ndarray,
    known_ns: np.ndarray,
    superseded_ns: np.ndarray,
    score: np.ndarray,
    window_ns: int,
    half_life_ns: float,
    decay: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(count, mean) per close over items in (close - window, close] whose version is known at the
    close (known <= close < superseded); ``decay`` weights by age."""
    n = close_ns.size
    count = np.zeros(n, dtype=np.float64)
    mean = np.full(n, np.nan)
    hi = 0
    lo = 0
    for b in range(n):
        c = close_ns[b]
        while hi < item_ns.size and item_ns[hi] <= c:
            hi += 1
        while lo < hi and item_ns[lo] <= c - window_ns:
            lo += 1
        total = 0.0
        weights = 0.0
        seen = 0
        for i in range(lo, hi):
            if np.isnan(score[i]) or known_ns[i] > c or superseded_ns[i] <= c:
                continue
            w = 0.5 ** ((c - item_ns[i]) / half_life_ns) if decay else 1.0
            total += w * score[i]
            weights += w
            seen += 1
        count[b] = seen
        if weights > 0:
            mean[b] = total / weights
    return count, mean


def sentiment_features(
    close_ns: np.ndarray,
    item_ns: np.ndarray,
    item_score: np.ndarray,
    windows: Sequence[int] = WINDOWS_HOURS,
    half_life_hours: float = HALF_LIFE_HOURS,
    *,
    known_ns: np.ndarray | None = None,
    superseded_ns: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The features of bars closing at ``close_ns`` (ascending) from one symbol's item versions
    (``item_ns`` their publication, ascending; ``item_score`` NaN where no sentiment). A version
    counts for a close in [``known_ns``, ``superseded_ns``): by default from its publication on,
    never superseded (an item with one version)."""
    close_ns = np.ascontiguousarray(close_ns, dtype=np.int64)
    item_ns = np.ascontiguousarray(item_ns, dtype=np.int64)
    item_score = np.ascontiguousarray(item_score, dtype=np.float64)
    known = item_ns if known_ns is None else np.ascontiguousarray(known_ns, dtype=np.int64)
    superseded = (
        np.full(item_ns.size, NEVER_NS, dtype=np.int64)
        if superseded_ns is None
        else np.ascontiguousarray(superseded_ns, dtype=np.int64)
    )
    if not item_ns.size == known.size == superseded.size == item_score.size:
        raise RequestError(
            f"one value per item version: {item_ns.size} publication times, {item_score.size} scores, "
            f"{known.size} known and {superseded.size} superseded times; pass arrays of equal length"
        )
    out: dict[str, np.ndarray] = {}
    versions = (item_ns, known, superseded, item_score)
    for w in windows:
        count, mean = _window(close_ns, *versions, w * HOUR_NS, 1.0, False)
        out[f"news_count_{w}h"] = count
        out[f"news_sentiment_mean_{w}h"] = mean
    _, decayed = _window(close_ns, *versions, max(windows) * HOUR_NS, half_life_hours * HOUR_NS, True)
    out["news_sentiment_decayed"] = decayed
    return out


def bar_close_ns(ts: pd.Series, timeframe: str) -> np.ndarray:
    """The instant each bar closes (see the module docstring)."""
    try:
        width = bar_width_ns(timeframe)
    except (PermanentSourceError, DataQualityError) as exc:
        # taken as daily, a 10:00 bar of an unknown width would see the news until the next close
        raise RequestError(f"cannot tell when a {timeframe!r} bar closes for its news features: {exc}") from exc
    stamps = pd.to_datetime(ts, utc=True).astype("datetime64[ns, UTC]")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if width is not None:
        return ns + width
    if len(ns) == 0:
        return ns
    schedule = nyse_sessions(stamps.min(), stamps.max())
    close_of = dict(zip(schedule.midnight_ns.tolist(), schedule.close_ns.tolist(), strict=True))
    # a daily stamp that is no session's midnight (a vendor's UTC midnight): its day's end, New York
    fallback = ns + 24 * HOUR_NS
    return np.array([close_of.get(int(t), int(f)) for t, f in zip(ns, fallback, strict=True)], dtype=np.int64)


def symbol_feature_frame(
    bars: pd.DataFrame, items: pd.DataFrame, timeframe: str, windows: Sequence[int] = WINDOWS_HOURS
) -> pd.DataFrame:
    """Long feature rows (symbol, timeframe, ts, name, value) for ``bars`` (symbol, ts) from
    ``items`` (symbol, published_at, sentiment; with ``known_at`` and ``superseded_at`` when an item
    has versions: :func:`storage.news.symbol_sentiment_rows`) of the same symbols."""
    frames = []
    for symbol, group in bars.groupby("symbol", sort=True):
        group = group.sort_values("ts")
        mine = items[items["symbol"] == symbol].sort_values("published_at", kind="stable")
        published = _nanoseconds(mine["published_at"])
        values = sentiment_features(
            bar_close_ns(group["ts"], timeframe),
            published,
            mine["sentiment"].to_numpy(dtype=np.float64, na_value=np.nan),
            windows,
            known_ns=_nanoseconds(mine["known_at"]) if "known_at" in mine else published,
            superseded_ns=_nanoseconds(mine["superseded_at"]) if "superseded_at" in mine else None,
        )
        for name, column in values.items():
            frames.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "timeframe": timeframe,
                        "ts": group["ts"].to_numpy(),
                        "name": name,
                        "value": column,
                    }
                )
            )
    if not frames:
        return pd.DataFrame(columns=["symbol", "timeframe", "ts", "name", "value"])
    return pd.concat(frames, ignore_index=True)


def _nanoseconds(stamps: pd.Series) -> np.ndarray:
    """Epoch nanoseconds of a column of instants; a missing one (NaT: never) as :data:`NEVER_NS`."""
    index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("ns")
    return np.where(index.isna(), NEVER_NS, index.asi8).astype(np.int64)
