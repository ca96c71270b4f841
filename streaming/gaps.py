"""What a hybrid stream missed, per symbol, as spans to fetch over REST: pure functions of batches.

A stream misses data in two ways, and each is recorded when it happens, at its place in the
stream's order (``streaming.service`` queues it between the micro-batches before and after it):

- a (re)connect: the previous connection's last frames and the new connection's first are told
  apart by their receive time (:func:`split_at`); the span runs from the newest event delivered
  before the connect (the watermark only at the start, when nothing was delivered yet) to the first
  event the new connection delivered (:func:`resume_point`, :func:`connect_gaps`);
- a spill: the frames the reader handed to the lake past ``streaming.lag_limit_seconds``; the span
  of each symbol's trades and bars in them (:func:`spilled_gaps`).

Spans are never derived from a watermark read later: the stream's own commits move the watermark,
so a watermark read at catch-up time may already lie past the span (the review's two quick
reconnects).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from core.model import session_start
from sources.stream_parsing import StreamBatch

MINUTE = pd.Timedelta(minutes=1)
#: Polygon stamps stream trades in milliseconds: a spilled trade stamped t may be any REST trade of
#: [t, t + 1 ms), so a spilled span is fetched up to its newest trade's millisecond's end.
TRADE_RESOLUTION = pd.Timedelta(milliseconds=1)


@dataclass(frozen=True)
class Gap:
    """One symbol's ``dataset`` ("trades", or "bars": the vendor's minute bars) missed over
    ``[start, end)`` by event time."""

    symbol: str
    dataset: str
    start: pd.Timestamp
    end: pd.Timestamp
    cause: str  # "connect" | "spill"

    def describe(self) -> dict[str, str]:
        return {
            "symbol": self.symbol,
            "dataset": self.dataset,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "cause": self.cause,
        }


def trades_catch_up_start(
    mark: pd.Timestamp | None,
    session_open: pd.Timestamp,
    lateness: pd.Timedelta,
    widths: Sequence[float] = (60.0,),
) -> pd.Timestamp:
    """Where a symbol's trades are fetched again from after a (re)start: the start of the oldest
    window (of ``widths`` seconds, epoch-aligned like the windows') that may still be open at its
    trades watermark ``mark``, i.e. the window of ``mark - lateness``; the session's open when there
    is no mark. The windows, fresh or not, then see every trade of each window they finalize: a
    start inside a window (``mark.floor("min") - lateness`` was the last ``lateness`` of the minute
    before) made them finalize that window from its tail alone."""
    if mark is None:
        return session_open
    oldest_open = mark - lateness
    return max(session_open, min(oldest_open.floor(f"{round(w)}s") for w in widths))


def delivered(batch: StreamBatch, received_from_ns: int) -> bool:
    """Whether ``batch`` holds a frame read at or after ``received_from_ns`` (wall ns): the frames
    it was parsed from when it carries them, else its trades' receive times."""
    received = batch.frames_received_ns or tuple(np.asarray(batch.received_ns).tolist())
    return bool(received) and max(received) >= received_from_ns


def split_at(
    batch: StreamBatch, at_ns: int, parse: Callable[[Sequence[bytes], Sequence[int]], StreamBatch]
) -> tuple[StreamBatch | None, StreamBatch]:
    """``batch`` cut at the instant ``at_ns`` a connection was made: (what was read before it, None
    if nothing, and what was read from it on). Frames are read in order, so the cut is a prefix of
    the batch's frames, each part parsed again by ``parse`` (the vendor's pure parser). A batch
    without its frames is cut by its trades' receive times; its other rows count as read after."""
    if batch.frames:
        cut = int(np.searchsorted(np.asarray(batch.frames_received_ns, dtype=np.int64), at_ns, side="left"))
        if cut == 0:
            return None, batch
        parts = []
        for frames, received in ((batch.frames[:cut], batch.frames_received_ns[:cut]),
                                 (batch.frames[cut:], batch.frames_received_ns[cut:])):  # fmt: skip
            parts.append(replace(parse(frames, received), frames=tuple(frames), frames_received_ns=tuple(received)))
        return parts[0], parts[1]
    trade_received = np.asarray(batch.received_ns, dtype=np.int64)
    old = trade_received < at_ns
    if not old.any():
        return None, batch
    trades = batch.trades.reset_index(drop=True)
    before = replace(
        StreamBatch.empty(batch.source), trades=trades[old].reset_index(drop=True), received_ns=trade_received[old]
    )
    return before, replace(batch, trades=trades[~old].reset_index(drop=True), received_ns=trade_received[~old])


def newest_bars(batch: StreamBatch) -> dict[str, pd.Timestamp]:
    """The newest vendor minute bar of each symbol in ``batch``."""
    if batch.bars.empty:
        return {}
    newest = batch.bars.groupby(batch.bars["symbol"].astype(str), sort=False)["ts"].max()
    return {str(symbol): pd.Timestamp(ts) for symbol, ts in newest.items()}


def resume_point(batch: StreamBatch, datasets: Collection[str]) -> pd.Timestamp | None:
    """Where a reconnected stream picked up, given a batch read wholly after the connect: its
    earliest trade; in a plan without trades, its earliest vendor minute bar (the first minute the
    new connection closed). None while it has none."""
    rows = batch.trades if "trades" in datasets else batch.bars
    return pd.Timestamp(rows["ts"].min()) if not rows.empty else None


def connect_gaps(
    symbols: Sequence[str],
    datasets: Collection[str],
    trades_from: Mapping[str, pd.Timestamp | None],
    bars_from: Mapping[str, pd.Timestamp | None],
    resume: pd.Timestamp,
    *,
    lateness: pd.Timedelta,
    widths: Sequence[float],
) -> list[Gap]:
    """The spans of each symbol a (re)connect missed, up to ``resume`` (:func:`resume_point`).
    ``trades_from``/``bars_from``: the newest trade and minute bar the stream had delivered before
    the connect (the watermarks at the start; None: nothing yet, from the session's open). Trades
    are fetched from the oldest window that may still be open then (:func:`trades_catch_up_start`),
    minute bars after the newest delivered one, up to the minute of ``resume`` (a plan without
    trades resumes at a bar, which the stream delivered)."""
    opens = pd.Timestamp(session_start(pd.Series([resume])).iloc[0])
    gaps: list[Gap] = []
    for symbol in symbols:
        if "trades" in datasets:
            start = trades_catch_up_start(trades_from.get(symbol), opens, lateness, widths)
            if start < resume:
                gaps.append(Gap(symbol, "trades", start, resume, "connect"))
        if "bars" in datasets:
            mark = bars_from.get(symbol)
            start = opens if mark is None else max(opens, mark + MINUTE)
            end = resume.floor("min") if "trades" in datasets else resume
            if start < end:
                gaps.append(Gap(symbol, "bars", start, end, "connect"))
    return gaps


def spilled_gaps(spilled: StreamBatch, datasets: Collection[str]) -> list[Gap]:
    """The spans of each symbol's trades and vendor minute bars in frames the reader spilled
    (``spilled``: those frames parsed). Quotes have no REST catch-up."""
    gaps: list[Gap] = []
    for dataset, rows, past_newest in (
        ("trades", spilled.trades, TRADE_RESOLUTION),
        ("bars", spilled.bars, pd.Timedelta(1, "ns")),
    ):
        if dataset not in datasets or rows.empty:
            continue
        spans = rows.groupby(rows["symbol"].astype(str), sort=True)["ts"].agg(["min", "max"])
        for symbol, first, last in spans.itertuples():
            gaps.append(Gap(str(symbol), dataset, pd.Timestamp(first), pd.Timestamp(last) + past_newest, "spill"))
    return gaps


def marks_until(gaps: Iterable[Gap]) -> dict[tuple[str, str], pd.Timestamp]:
    """How far each (dataset, symbol) watermark may move while ``gaps`` are unfilled: everything
    before a gap was committed (a catch-up is left open at the head of the stream's queue), so a
    symbol's trades watermark may reach the start of its earliest gap, and its bars watermark the
    last minute ending by the earliest gap of either dataset (the stream's bars are built from its
    trades, and the next run fetches minute bars from the watermark's next minute on). Symbols
    without a gap are not limited."""
    caps: dict[tuple[str, str], pd.Timestamp] = {}
    for gap in gaps:
        limits = [("bars", gap.start.floor("min") - MINUTE)]
        if gap.dataset == "trades":
            limits.append(("trades", gap.start))
        for dataset, limit in limits:
            key = (dataset, gap.symbol)
            caps[key] = min(caps.get(key, limit), limit)
    return caps


def whole_windows(gap: Gap, widths: Sequence[float]) -> Gap:
    """A trades ``gap`` widened to the whole windows (``widths`` seconds, epoch-aligned) it touches.
    Fetched again after the live windows closed those windows without its trades, the span's bars
    are built afresh from REST alone, which then holds every trade of each such window."""
    if gap.dataset != "trades":
        return gap
    start = min(gap.start.floor(f"{round(w)}s") for w in widths)
    end = max(gap.end.ceil(f"{round(w)}s") for w in widths)
    return replace(gap, start=start, end=end)


def bars_within(bars: pd.DataFrame, gaps: Sequence[Gap], closed_by: pd.Timestamp | None) -> pd.DataFrame:
    """The ``bars`` (stamped at their window's start) whose whole window lies in one of their
    symbol's trades ``gaps`` and ended by ``closed_by`` (the stream's event clock less the lateness:
    the vendor had every trade of it): bars built from those gaps' REST trades alone are complete."""
    if bars.empty or closed_by is None:
        return bars.iloc[0:0]
    starts = bars["ts"]
    ends = starts + pd.to_timedelta(bars["timeframe"].astype(str))
    symbols = bars["symbol"].astype(str)
    inside = pd.Series(False, index=bars.index)
    for gap in gaps:
        if gap.dataset == "trades":
            inside |= (symbols == gap.symbol) & (starts >= gap.start) & (ends <= gap.end)
    return bars[inside & (ends <= closed_by)].reset_index(drop=True)


def join_batches(batches: Sequence[StreamBatch]) -> StreamBatch:
    """Consecutive micro-batches as one, in order: a backlog that waited behind a catch-up is
    stored in a few transactions, not one per micro-batch (the consumer catches up sooner)."""
    if len(batches) == 1:
        return batches[0]

    def rows(name: str) -> pd.DataFrame:
        parts = [getattr(b, name) for b in batches]
        filled = [p for p in parts if not p.empty]
        return pd.concat(filled, ignore_index=True) if len(filled) > 1 else (filled or parts)[0]

    return replace(
        batches[0],
        trades=rows("trades"),
        quotes=rows("quotes"),
        bars=rows("bars"),
        corrections=rows("corrections"),
        cancels=rows("cancels"),
        news=rows("news"),
        dead=[d for b in batches for d in b.dead],
        received_ns=np.concatenate([np.asarray(b.received_ns, dtype=np.int64) for b in batches]),
        events=[e for b in batches for e in b.events],
        ignored=sum(b.ignored for b in batches),
        frames=tuple(f for b in batches for f in b.frames),
        frames_received_ns=tuple(n for b in batches for n in b.frames_received_ns),
    )
