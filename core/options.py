"""Option contract terms every layer shares: the OCC symbol and the instant a contract expires."""

from __future__ import annotations

import re

import pandas as pd

NEW_YORK = "America/New_York"
EXPIRY_HOUR = 16  # the close of the expiration date, New York
OCC = re.compile(r"^O:(?P<root>[A-Z]{1,6}[0-9]?)(?P<date>[0-9]{6})(?P<right>[CP])(?P<strike>[0-9]{8})$")


def occ_root(underlying: str) -> str:
    """The OCC root of an underlying's standard contracts (BRK.B -> BRKB)."""
    return underlying.replace(".", "").replace("-", "").replace("/", "")


def parse_occ(contracts: pd.Series) -> pd.DataFrame:
    """Root, expiration (midnight UTC), right ('call'/'put') and strike of each OCC symbol; NaN/NaT
    where a symbol does not parse."""
    parts = contracts.astype("string").str.extract(OCC.pattern)
    expiration = pd.to_datetime(parts["date"], format="%y%m%d", errors="coerce", utc=True)
    right = parts["right"].map({"C": "call", "P": "put"})
    strike = pd.to_numeric(parts["strike"], errors="coerce") / 1000.0
    return pd.DataFrame({"root": parts["root"], "expiration": expiration, "right": right, "strike": strike})


def expiry_instants(expiration: pd.Series) -> pd.Series:
    """16:00 New York of each expiration date (dates as midnight UTC, as the parsers give them), in UTC."""
    days = pd.DatetimeIndex(expiration)
    if days.tz is not None:
        days = days.tz_convert("UTC").tz_localize(None)
    local = (days.normalize() + pd.Timedelta(hours=EXPIRY_HOUR)).tz_localize(NEW_YORK)
    return pd.Series(local.tz_convert("UTC"), index=expiration.index)
