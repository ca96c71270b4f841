"""Option chains priced off one implied-volatility surface, so prices, IVs and greeks agree.

IV(k, T) = atm(T) * (1 - skew * m + smile * m^2) with m = ln(K/F) / sqrt(T): a downward equity
skew and a mild smile, the at-the-money level following the underlying's current vol regime with
an upward-sloping term structure. Prices and greeks are Black-Scholes-Merton on that IV with the
flat rate :data:`RISK_FREE` and a continuous dividend yield (the underlying's cash dividends with
an ex date in the 365 days up to the snapshot, over the spot). Time to expiry is measured from the
snapshot instant to 16:00 New York of the expiration date, in years of 365 days: the conventions
a client needs to recover the IV from the quotes.

Quotes are the model price with a spread, plus the defects real chains show, at realistic rates,
fixed per contract (:data:`DEFECTS`): a crossed quote (bid above ask), a stale quote (last updated
a day or more before the snapshot), a zero bid (far out-of-the-money contracts worth under 10
cents), and a quote below the discounted intrinsic value (deep in the money).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

RISK_FREE = 0.04
NS_PER_YEAR = 365 * 86_400 * 1_000_000_000
NEW_YORK = ZoneInfo("America/New_York")

QUOTE_OK = 0
QUOTE_CROSSED = 1
QUOTE_STALE = 2
QUOTE_ZERO_BID = 3
QUOTE_BELOW_INTRINSIC = 4
DEFECTS = {
    QUOTE_CROSSED: "crossed",
    QUOTE_STALE: "stale",
    QUOTE_ZERO_BID: "zero bid",
    QUOTE_BELOW_INTRINSIC: "below intrinsic",
}
CROSSED_RATE = 0.01  # of all contracts
STALE_RATE = 0.03
BELOW_INTRINSIC_RATE = 0.10  # of contracts in the money by more than 10 % of the strike
ZERO_BID_BELOW = 0.10  # model price under which the bid is 0


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26 erf (abs error < 1.5e-7): numpy has no erf and scipy is not needed.
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def iv_surface(atm_vol: float, strike: np.ndarray, forward: float | np.ndarray, years: np.ndarray) -> np.ndarray:
    m = np.log(strike / forward) / np.sqrt(years)
    term = atm_vol * (1 + 0.08 * np.log1p(years * 4))
    return np.clip(term * (1 - 0.35 * m + 0.25 * m * m), 0.05, 3.0)


def expirations(as_of: date) -> list[date]:
    """Eight weekly Fridays, then the third Friday of the following six months."""
    days_to_friday = (4 - as_of.weekday()) % 7 or 7
    first = as_of + timedelta(days=days_to_friday)
    weekly = [first + timedelta(weeks=i) for i in range(8)]
    monthly = []
    year, month = as_of.year, as_of.month
    for _ in range(9):
        month += 1
        if month > 12:
            year, month = year + 1, 1
        d = date(year, month, 15)
        third_friday = d + timedelta(days=(4 - d.weekday()) % 7)
        if third_friday > weekly[-1]:
            monthly.append(third_friday)
    return sorted(set(weekly + monthly[:6]))


def expiry_ns(day: date) -> int:
    """16:00 New York of an expiration date (the close, when the last trading ends), UTC ns."""
    return int(datetime.combine(day, time(16), tzinfo=NEW_YORK).timestamp()) * 1_000_000_000


@dataclass(frozen=True)
class OptionChain:
    underlying: str
    spot: float
    snapshot_ns: int  # the instant the chain is priced at (the underlying's last update)
    dividend_yield: float
    expiration: np.ndarray  # datetime64[D]
    strike: np.ndarray
    is_call: np.ndarray
    iv: np.ndarray  # the model's volatility each contract is priced with
    price: np.ndarray  # the model price (unrounded, at least 0.01)
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray  # per calendar day
    vega: np.ndarray  # per vol point
    rho: np.ndarray  # per rate point
    open_interest: np.ndarray
    volume: np.ndarray
    bid: np.ndarray  # quoted, in cents, with the defects
    ask: np.ndarray
    quote_ns: np.ndarray  # the quote's last update
    defect: np.ndarray  # QUOTE_* per contract

    def __len__(self) -> int:
        return len(self.strike)

    def occ_ticker(self, i: int) -> str:
        exp = str(self.expiration[i]).replace("-", "")[2:]
        cp = "C" if self.is_call[i] else "P"
        return f"O:{self.underlying.replace('.', '')}{exp}{cp}{round(float(self.strike[i]) * 1000):08d}"


def strike_step(spot: float) -> float:
    return 0.5 if spot < 25 else 1.0 if spot < 50 else 2.5 if spot < 150 else 5.0 if spot < 500 else 10.0


def _quotes(
    price: np.ndarray, lower_bound: np.ndarray, strike: np.ndarray, snapshot_ns: int, seed_key: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bid, ask, quote_ns, defect): a 2 % spread around the price, then each contract's defect,
    drawn from a hash of its position and the chain's seed (the same snapshot, the same quotes)."""
    n = len(price)
    u = ((np.arange(n, dtype=np.int64) * 2246822519 + seed_key * 3266489917 + 7) % 100_003) / 100_003.0
    half = np.maximum(0.01, np.round(price * 0.02, 2))
    bid = np.maximum(0.0, np.round(price - half / 2, 2))
    ask = np.round(price + half / 2, 2)
    quote_ns = np.full(n, snapshot_ns, dtype=np.int64)
    defect = np.full(n, QUOTE_OK, dtype=np.int8)

    deep = lower_bound > 0.10 * strike
    below = deep & (u >= 1 - BELOW_INTRINSIC_RATE)
    ask = np.where(below, np.floor(lower_bound * 0.98 * 100) / 100, ask)
    bid = np.where(below, np.maximum(0.0, ask - 0.05), bid)
    defect[below] = QUOTE_BELOW_INTRINSIC

    zero = (price < ZERO_BID_BELOW) & ~below
    bid = np.where(zero, 0.0, bid)
    defect[zero] = QUOTE_ZERO_BID

    crossed = (u < CROSSED_RATE) & ~below
    bid = np.where(crossed, ask + np.maximum(0.01, np.round(price * 0.05, 2)), bid)
    defect[crossed] = QUOTE_CROSSED

    stale = (u >= CROSSED_RATE) & (u < CROSSED_RATE + STALE_RATE) & ~below & ~zero
    age_days = 1 + (np.arange(n) % 3)
    quote_ns = np.where(stale, snapshot_ns - age_days * 86_400 * 1_000_000_000, quote_ns)
    defect[stale] = QUOTE_STALE
    return bid, ask, quote_ns, defect


def option_chain(
    underlying: str,
    spot: float,
    atm_vol: float,
    as_of: date,
    seed_key: int,
    snapshot_ns: int | None = None,
    dividend_yield: float = 0.0,
) -> OptionChain:
    """The chain of ``underlying`` at ``snapshot_ns`` (default: 16:00 New York of ``as_of``)."""
    now_ns = expiry_ns(as_of) if snapshot_ns is None else snapshot_ns
    step = strike_step(spot)
    strikes = np.arange(np.floor(spot * 0.7 / step) * step, spot * 1.3 + step, step)
    strikes = strikes[strikes > 0]
    exps = np.array(expirations(as_of), dtype="datetime64[D]")
    exp_g, k_g, call_g = (a.ravel() for a in np.meshgrid(exps, strikes, [True, False], indexing="ij"))
    exp_ns = np.array([expiry_ns(d) for d in exp_g.astype(object)], dtype=np.int64)
    years = (exp_ns - now_ns) / NS_PER_YEAR
    q = dividend_yield
    forward = spot * np.exp((RISK_FREE - q) * years)
    iv = iv_surface(atm_vol, k_g, forward, years)
    sqrt_t = np.sqrt(years)
    d1 = (np.log(forward / k_g) + 0.5 * iv**2 * years) / (iv * sqrt_t)
    d2 = d1 - iv * sqrt_t
    disc = np.exp(-RISK_FREE * years)
    carry = np.exp(-q * years)
    call = disc * (forward * _norm_cdf(d1) - k_g * _norm_cdf(d2))
    put = call - disc * (forward - k_g)
    price = np.maximum(np.where(call_g, call, put), 0.01)
    delta = carry * np.where(call_g, _norm_cdf(d1), _norm_cdf(d1) - 1.0)
    gamma = carry * _norm_pdf(d1) / (spot * iv * sqrt_t)
    decay = -spot * carry * _norm_pdf(d1) * iv / (2 * sqrt_t)
    theta_call = decay - RISK_FREE * k_g * disc * _norm_cdf(d2) + q * spot * carry * _norm_cdf(d1)
    theta_put = decay + RISK_FREE * k_g * disc * _norm_cdf(-d2) - q * spot * carry * _norm_cdf(-d1)
    theta = np.where(call_g, theta_call, theta_put) / 365.0
    vega = spot * carry * _norm_pdf(d1) * sqrt_t / 100.0
    rho = np.where(call_g, 1.0, -1.0) * k_g * years * disc * _norm_cdf(np.where(call_g, d2, -d2)) / 100.0
    moneyness = np.abs(np.log(k_g / spot))
    liquidity = np.exp(-8 * moneyness) / (1 + years * 4)
    jitter = 0.5 + (np.arange(len(k_g)) * 2654435761 + seed_key) % 1000 / 1000.0
    oi = np.round(20000 * liquidity * jitter).astype(np.int64)
    vol = np.round(oi * 0.15 * jitter).astype(np.int64)
    # a few contracts trade far above their open interest (the unusual-activity scanners' prey)
    hot = (np.arange(len(k_g)) * 40503 + seed_key * 17) % 97 == 0
    vol = np.where(hot, np.maximum(oi, 50) * (3 + (np.arange(len(k_g)) % 5)), vol)
    lower = np.maximum(np.where(call_g, spot * carry - k_g * disc, k_g * disc - spot * carry), 0.0)
    bid, ask, quote_ns, defect = _quotes(price, lower, k_g, now_ns, seed_key)
    return OptionChain(
        underlying,
        spot,
        now_ns,
        q,
        exp_g,
        k_g,
        call_g,
        iv,
        price,
        delta,
        gamma,
        theta,
        vega,
        rho,
        oi,
        vol,
        bid,
        ask,
        quote_ns,
        defect,
    )
