"""Option chains priced off one implied-volatility surface, so prices, IVs and greeks agree.

IV(k, T) = atm(T) * (1 - skew * m + smile * m^2) with m = ln(K/F) / sqrt(T): a downward equity
skew and a mild smile, the at-the-money level following the underlying's current vol regime with
an upward-sloping term structure. Prices and greeks are Black-Scholes on that IV.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

RISK_FREE = 0.04


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26 erf (abs error < 1.5e-7): numpy has no erf and scipy is not needed.
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)


def iv_surface(atm_vol: float, strike: np.ndarray, forward: float, years: np.ndarray) -> np.ndarray:
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


@dataclass(frozen=True)
class OptionChain:
    underlying: str
    spot: float
    expiration: np.ndarray  # datetime64[D]
    strike: np.ndarray
    is_call: np.ndarray
    iv: np.ndarray
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray  # per calendar day
    vega: np.ndarray  # per vol point
    open_interest: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.strike)

    def occ_ticker(self, i: int) -> str:
        exp = str(self.expiration[i]).replace("-", "")[2:]
        cp = "C" if self.is_call[i] else "P"
        return f"O:{self.underlying.replace('.', '')}{exp}{cp}{round(float(self.strike[i]) * 1000):08d}"


def strike_step(spot: float) -> float:
    return 0.5 if spot < 25 else 1.0 if spot < 50 else 2.5 if spot < 150 else 5.0 if spot < 500 else 10.0


def option_chain(underlying: str, spot: float, atm_vol: float, as_of: date, seed_key: int) -> OptionChain:
    step = strike_step(spot)
    strikes = np.arange(np.floor(spot * 0.7 / step) * step, spot * 1.3 + step, step)
    strikes = strikes[strikes > 0]
    exps = np.array(expirations(as_of), dtype="datetime64[D]")
    exp_g, k_g, call_g = (a.ravel() for a in np.meshgrid(exps, strikes, [True, False], indexing="ij"))
    years = ((exp_g - np.datetime64(as_of, "D")).astype(np.int64) + 0.5) / 365.0
    forward = spot * np.exp(RISK_FREE * years)
    iv = iv_surface(atm_vol, k_g, float(spot), years)
    sqrt_t = np.sqrt(years)
    d1 = (np.log(forward / k_g) + 0.5 * iv**2 * years) / (iv * sqrt_t)
    d2 = d1 - iv * sqrt_t
    disc = np.exp(-RISK_FREE * years)
    call = disc * (forward * _norm_cdf(d1) - k_g * _norm_cdf(d2))
    put = call - disc * (forward - k_g)
    price = np.where(call_g, call, put)
    delta = np.where(call_g, _norm_cdf(d1), _norm_cdf(d1) - 1.0)
    gamma = _norm_pdf(d1) / (spot * iv * sqrt_t)
    theta_call = -spot * _norm_pdf(d1) * iv / (2 * sqrt_t) - RISK_FREE * k_g * disc * _norm_cdf(d2)
    theta_put = -spot * _norm_pdf(d1) * iv / (2 * sqrt_t) + RISK_FREE * k_g * disc * _norm_cdf(-d2)
    theta = np.where(call_g, theta_call, theta_put) / 365.0
    vega = spot * _norm_pdf(d1) * sqrt_t / 100.0
    moneyness = np.abs(np.log(k_g / spot))
    liquidity = np.exp(-8 * moneyness) / (1 + years * 4)
    jitter = 0.5 + (np.arange(len(k_g)) * 2654435761 + seed_key) % 1000 / 1000.0
    oi = np.round(20000 * liquidity * jitter).astype(np.int64)
    vol = np.round(oi * 0.15 * jitter).astype(np.int64)
    return OptionChain(
        underlying, spot, exp_g, k_g, call_g, iv, np.maximum(price, 0.01), delta, gamma, theta, vega, oi, vol
    )
