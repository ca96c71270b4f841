"""The one synthetic market behind every emulated vendor: a facade over the pure generators.

`Market` owns the calendar and the size-bounded caches, and answers vendor-neutral questions
(bars of a symbol between two instants at some resolution and adjustment, trades, corporate
actions, news, option chains, filings). The wire modules turn the answers into each vendor's
format, which is what makes a minute bar served as Polygon equal the one served as Alpaca.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from sandbox.cache import ByteBoundedLRU
from sandbox.clock import MarketClock, new_york_date
from sandbox.fundamentals import EarningsReport, Filing, earnings_reports, filings
from sandbox.news import NewsTable, symbol_news
from sandbox.options import OptionChain, option_chain
from sandbox.prices import (
    TRADING_DAYS,
    Bars,
    DailyHistory,
    SymbolProfile,
    adjustment_factors,
    aggregate,
    apply_adjustment,
    daily_bars,
    daily_history,
    minute_bars,
    symbol_hash,
    symbol_profile,
)
from sandbox.sessions import NS_PER_MINUTE, SessionCalendar
from sandbox.ticks import Quotes, Trades, session_quotes, session_trades

SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,5}(\.[A-Z]{1,2})?$")
INTRADAY_UNITS = {"minute": 60, "hour": 3600}
PERIOD_UNITS = ("day", "week", "month", "quarter", "year")


def canonical_symbol(symbol: str) -> str:
    """BRK-B (Yahoo), BRK.B (Polygon, Alpaca) and brk/b all name one instrument: BRK.B."""
    return symbol.strip().upper().replace("-", ".").replace("/", ".")


@dataclass(frozen=True)
class SplitEvent:
    symbol: str
    ex_date: date
    split_from: float
    split_to: float
    session: int


@dataclass(frozen=True)
class DividendEvent:
    symbol: str
    ex_date: date
    cash_amount: float
    declaration_date: date
    record_date: date
    pay_date: date
    session: int


class Market:
    """One seeded market, fixed last day (`as_of`), a clock (`now`), cached generation.

    Nothing is served after the clock's now: an intraday bar once its window has ended, the
    current session's daily bar as a partial bar built from the minutes that have ended (it
    changes until the close), ticks up to now. `as_of` bounds the calendar; a clock set later
    than its end still serves nothing after it.
    """

    def __init__(
        self,
        seed: int,
        as_of: date | None = None,
        unknown_prefix: str = "ZZZ",
        cache_bytes: int = 256 * 2**20,
        clock: MarketClock | None = None,
    ) -> None:
        self.seed = seed
        self.clock = clock or MarketClock.for_config(as_of, None)
        self.as_of = as_of or new_york_date(self.clock.now_ns())
        self.unknown_prefix = unknown_prefix.upper()
        self.calendar = SessionCalendar.build(self.as_of)
        self._as_of_session = self.calendar.index_on_or_before(self.as_of)
        self._histories: ByteBoundedLRU[tuple[SymbolProfile, DailyHistory]] = ByteBoundedLRU(
            cache_bytes // 4, lambda v: sum(a.nbytes for a in vars(v[1]).values())
        )
        self._minutes: ByteBoundedLRU[Bars] = ByteBoundedLRU(cache_bytes // 4, lambda b: b.nbytes)
        self._ticks: ByteBoundedLRU[Trades | Quotes] = ByteBoundedLRU(cache_bytes // 2, lambda t: t.nbytes)
        self._news: ByteBoundedLRU[NewsTable] = ByteBoundedLRU(
            cache_bytes // 16, lambda t: sum(getattr(t, f).nbytes for f in ("id", "t_ns", "session")) * 2
        )

    # ---- time ---------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self.clock.now_ns()

    @property
    def last_session(self) -> int:
        """The session of the clock's New York date or the last before it (never after `as_of`):
        today's session from midnight on, whether or not it has opened."""
        today = self.calendar.index_on_or_before(new_york_date(self.now_ns()))
        return min(self._as_of_session, today)

    def _forming_day(self, symbol: str, bars: Bars, now_ns: int) -> Bars:
        """Daily bars with the last one, when its session has not closed by `now_ns`, rebuilt from
        the minutes that have ended (dropped before the first one has)."""
        if not len(bars):
            return bars
        session = int(bars.session[-1])
        if int(self.calendar.close_ns[session]) <= now_ns:
            return bars
        minutes = self.minute_bars(symbol, session)
        minutes = minutes.take(minutes.t_ns + NS_PER_MINUTE <= now_ns)
        closed = bars.take(slice(0, len(bars) - 1))
        if not len(minutes):
            return closed
        midnight = self.calendar.midnight_ns[session : session + 1].copy()
        partial = aggregate(minutes, np.zeros(len(minutes), dtype=np.int64), midnight)
        return Bars.concat([closed, partial])

    # ---- identity -----------------------------------------------------------------------------
    def is_valid(self, symbol: str) -> bool:
        return bool(SYMBOL_PATTERN.match(canonical_symbol(symbol)))

    def exists(self, symbol: str) -> bool:
        """Any sane symbol trades, except the configured unknown prefix (for 'no data' paths)."""
        sym = canonical_symbol(symbol)
        return self.is_valid(sym) and not (self.unknown_prefix and sym.startswith(self.unknown_prefix))

    def profile(self, symbol: str) -> SymbolProfile:
        return self._history(symbol)[0]

    def history(self, symbol: str) -> DailyHistory:
        return self._history(symbol)[1]

    def _history(self, symbol: str) -> tuple[SymbolProfile, DailyHistory]:
        sym = canonical_symbol(symbol)

        def build() -> tuple[SymbolProfile, DailyHistory]:
            profile = symbol_profile(self.seed, sym)
            return profile, daily_history(self.seed, profile, self.calendar)

        return self._histories.get_or_create(sym, build)

    # ---- bars ---------------------------------------------------------------------------------
    def minute_bars(self, symbol: str, session: int) -> Bars:
        sym = canonical_symbol(symbol)
        profile, history = self._history(sym)
        return self._minutes.get_or_create(
            (sym, session), lambda: minute_bars(self.seed, profile, history, self.calendar, session)
        )

    def bars(
        self,
        symbol: str,
        start_ns: int,
        end_ns: int,
        unit: str = "minute",
        multiplier: int = 1,
        adjustment: str = "raw",
        anchor: str = "clock",
    ) -> Bars:
        """Bars whose window starts in [start_ns, end_ns], oldest first.

        `anchor="clock"` aligns intraday windows to the epoch (Polygon, Alpaca: 10:00, 11:00...),
        `anchor="session"` to the session open (Yahoo: 9:30, 10:30...). Daily bars are the regular
        session; longer periods aggregate the adjusted daily bars.
        """
        if not self.exists(symbol):
            return Bars.empty()
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        history = self.history(symbol)
        price_f, volume_f = adjustment_factors(history, self.last_session, adjustment)
        cal = self.calendar
        now_ns = self.now_ns()
        if unit in INTRADAY_UNITS:
            lo, hi = cal.ns_range(start_ns, end_ns)
            hi = min(hi, self.last_session + 1)
            raw = Bars.concat([self.minute_bars(symbol, s) for s in range(lo, hi)])
            if len(raw) and int(raw.t_ns[-1]) + NS_PER_MINUTE > now_ns:
                raw = raw.take(raw.t_ns + NS_PER_MINUTE <= now_ns)  # only minutes that have ended
            bars = apply_adjustment(raw, price_f, volume_f)
            width = INTRADAY_UNITS[unit] * multiplier * 1_000_000_000
            if width != NS_PER_MINUTE and len(bars):
                if anchor == "session":
                    offset = (bars.t_ns - cal.open_ns[bars.session]) // width
                    keys = bars.session * 100_000 + offset
                    starts = cal.open_ns[bars.session] + offset * width
                else:
                    keys = bars.t_ns // width
                    starts = keys * width
                first = np.concatenate([[True], keys[1:] != keys[:-1]])
                bars = aggregate(bars, keys, starts[first])
                window_end = np.minimum(bars.t_ns + width, cal.close_ns[bars.session])
                if (window_end > now_ns).any():
                    bars = bars.take(window_end <= now_ns)  # a window still open is not served
        elif unit in PERIOD_UNITS:
            lo = int(np.searchsorted(cal.midnight_ns, start_ns, side="left"))
            hi = min(int(np.searchsorted(cal.midnight_ns, end_ns, side="right")), self.last_session + 1)
            days = self._forming_day(symbol, daily_bars(history, cal, lo, max(lo, hi)), now_ns)
            bars = apply_adjustment(days, price_f, volume_f)
            if len(bars) and (unit != "day" or multiplier > 1):
                bars = aggregate(bars, self._period_keys(bars.session, unit, multiplier, lo))
            return bars
        else:
            raise ValueError(f"unknown bar unit {unit!r}")
        keep = (bars.t_ns >= start_ns) & (bars.t_ns <= end_ns)
        return bars if keep.all() else bars.take(keep)

    def bars_page(
        self,
        symbol: str,
        start_ns: int,
        end_ns: int,
        unit: str,
        multiplier: int,
        adjustment: str,
        limit: int,
        descending: bool = False,
        anchor: str = "clock",
    ) -> tuple[Bars, bool]:
        """At most `limit` bars from one end of [start_ns, end_ns], and whether more remain.

        Intraday pages are built from just enough sessions to fill the page, so paging through
        years of minute bars costs per page, not per range.
        """
        if unit not in INTRADAY_UNITS:
            bars = self.bars(symbol, start_ns, end_ns, unit, multiplier, adjustment, anchor)
            if descending:
                bars = bars.take(slice(None, None, -1))
            return bars.take(slice(0, limit)), len(bars) > limit
        if not self.exists(symbol):
            return Bars.empty(), False
        cal = self.calendar
        lo, hi = cal.ns_range(start_ns, end_ns)
        hi = min(hi, self.last_session + 1)
        per_session = max(1, 390 * 60 // (INTRADAY_UNITS[unit] * multiplier))
        chunk = max(1, limit // per_session + 1)
        parts: list[Bars] = []
        have = 0
        order = range(hi, lo, -chunk) if descending else range(lo, hi, chunk)
        for edge in order:
            s0, s1 = (max(lo, edge - chunk), edge) if descending else (edge, min(hi, edge + chunk))
            window_lo = max(start_ns, int(cal.midnight_ns[s0]))
            window_hi = min(end_ns, int(cal.midnight_ns[s1 - 1]) + 86_400_000_000_000 - 1)
            part = self.bars(symbol, window_lo, window_hi, unit, multiplier, adjustment, anchor)
            if descending:
                part = part.take(slice(None, None, -1))
            parts.append(part)
            have += len(part)
            if have > limit:
                break
        bars = Bars.concat(parts)
        return bars.take(slice(0, limit)), len(bars) > limit

    def _period_keys(self, sessions: np.ndarray, unit: str, multiplier: int, first: int) -> np.ndarray:
        days = self.calendar.days[sessions]
        if unit == "day":
            return (sessions - first) // multiplier
        if unit == "week":
            return ((days.astype(np.int64) + 3) // 7) // multiplier  # Monday-based weeks
        months = days.astype("datetime64[M]").astype(np.int64)
        if unit == "month":
            return months // multiplier
        if unit == "quarter":
            return (months // 3) // multiplier
        return (months // 12) // multiplier

    # ---- ticks --------------------------------------------------------------------------------
    def trades(self, symbol: str, session: int) -> Trades:
        sym = canonical_symbol(symbol)
        return self._ticks.get_or_create(
            ("T", sym, session), lambda: session_trades(self.seed, sym, session, self.minute_bars(sym, session))
        )

    def quotes(self, symbol: str, session: int) -> Quotes:
        sym = canonical_symbol(symbol)
        return self._ticks.get_or_create(
            ("Q", sym, session), lambda: session_quotes(self.seed, sym, session, self.trades(sym, session))
        )

    def tick_sessions(self, start_ns: int, end_ns: int, descending: bool = False) -> Iterator[int]:
        lo, hi = self.calendar.ns_range(start_ns, end_ns)
        hi = min(hi, self.last_session + 1)
        return iter(range(hi - 1, lo - 1, -1) if descending else range(lo, hi))

    # ---- corporate actions --------------------------------------------------------------------
    def splits(self, symbol: str) -> list[SplitEvent]:
        if not self.exists(symbol):
            return []
        sym = canonical_symbol(symbol)
        ratio = self.history(sym).split_ratio[: self.last_session + 1]
        out = []
        for i in np.flatnonzero(ratio != 1.0):
            r = float(ratio[i])
            split_from, split_to = (1.0, r) if r >= 1 else (round(1 / r), 1.0)
            out.append(SplitEvent(sym, self.calendar.day(int(i)), split_from, split_to, int(i)))
        return out

    def dividends(self, symbol: str) -> list[DividendEvent]:
        if not self.exists(symbol):
            return []
        sym = canonical_symbol(symbol)
        div = self.history(sym).dividend[: self.last_session + 1]
        out = []
        for i in np.flatnonzero(div > 0):
            ex = self.calendar.day(int(i))
            record = self.calendar.day(min(int(i) + 1, len(self.calendar) - 1))
            out.append(
                DividendEvent(sym, ex, float(div[i]), ex - timedelta(days=14), record, ex + timedelta(days=21), int(i))
            )
        return out

    def split_factor_at(self, symbol: str, day: date) -> float:
        """Cumulative shares per original share after every split up to `day` (for share counts)."""
        idx = self.calendar.index_on_or_before(min(day, self.as_of))
        ratio = self.history(symbol).split_ratio
        return float(np.prod(ratio[: idx + 1])) if idx >= 0 else 1.0

    # ---- news, options, fundamentals ----------------------------------------------------------
    def news(self, symbol: str) -> NewsTable:
        sym = canonical_symbol(symbol)
        last = self.last_session
        return self._news.get_or_create(
            (sym, last), lambda: symbol_news(self.seed, sym, self.history(sym), self.calendar, last)
        )

    def option_chain(self, symbol: str) -> OptionChain:
        sym = canonical_symbol(symbol)
        history = self.history(sym)
        last = self.last_session
        spot = float(history.close[last])
        atm = float(history.sigma[last]) * np.sqrt(TRADING_DAYS)
        snapshot_ns = min(int(self.calendar.close_ns[last]), self.now_ns())
        year_ago = new_york_date(snapshot_ns) - timedelta(days=365)
        paid = sum(d.cash_amount for d in self.dividends(sym) if year_ago < d.ex_date)
        seed_key = (self.seed * 31 + symbol_hash(sym)) % 1000
        return option_chain(sym, spot, atm, self.as_of, seed_key, snapshot_ns, paid / spot)

    def filings(self, symbol: str) -> list[Filing]:
        """Filings made by the clock's New York date (never after `as_of`), restatements included."""
        sym = canonical_symbol(symbol)
        day = min(self.as_of, new_york_date(self.now_ns()))
        return filings(self.seed, self.profile(sym), lambda d: self.split_factor_at(sym, d), day)

    def earnings(self, symbol: str) -> list[EarningsReport]:
        """The earnings calendar of a symbol as known at the clock: past reports with their actuals,
        upcoming ones (estimate published) without."""
        sym = canonical_symbol(symbol)
        now = datetime.fromtimestamp(self.now_ns() / 1e9, tz=UTC)
        return earnings_reports(self.seed, self.profile(sym), lambda d: self.split_factor_at(sym, d), now)

    def cache_stats(self) -> dict[str, int]:
        return {
            "minute_sessions": len(self._minutes),
            "minute_bytes": self._minutes.nbytes,
            "tick_sessions": len(self._ticks),
            "tick_bytes": self._ticks.nbytes,
            "symbols": len(self._histories),
            "hits": self._minutes.hits + self._ticks.hits,
            "misses": self._minutes.misses + self._ticks.misses,
        }
