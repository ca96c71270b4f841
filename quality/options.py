"""Record-level checks of option chain snapshots (pure): what may not be stored, and why.

A contract is refused, with a reason naming the value, when:

- its OCC symbol does not parse (``O:`` + root + YYMMDD + C/P + strike x 1000 in 8 digits), or
  disagrees with the contract's own terms (expiration, type, strike);
- its underlying is not the one the chain was asked for (a chain of AAPL holding an MSFT contract),
  or its OCC root is not that underlying's (share classes lose their dot: BRK.B -> BRKB; an
  adjusted contract's root ends in a digit, BRKB1, and is accepted);
- it has expired by the snapshot (16:00 New York of the expiration date is not after ``ts``);
- a price is negative or zero where zero means nothing: strike, underlying price, last trade,
  ask, or a negative bid (a zero bid is a real quote: flagged later, stored);
- it has no snapshot time.

Refused records go to the dead-letter table (like bars failing validation); the rest are stored.
A crossed, stale, zero-bid or below-intrinsic quote is NOT refused: it is a real quote, stored
with its flags and without an IV (:mod:`features.option_chains`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.options import expiry_instants, occ_root, parse_occ

REASON = "reason"


def check_option_snapshots(frame: pd.DataFrame, underlying: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(accepted, rejected)``: ``rejected`` has a ``reason`` per record (the first rule it fails)."""
    reasons = pd.Series(pd.NA, index=frame.index, dtype="string")

    def refuse(mask: pd.Series | np.ndarray, text: pd.Series | str) -> None:
        hit = pd.Series(np.asarray(mask, dtype=bool), index=frame.index) & reasons.isna()
        if hit.any():
            reasons[hit] = text[hit] if isinstance(text, pd.Series) else text

    contract = frame["contract"].astype("string")
    occ = parse_occ(contract)
    refuse(
        occ["root"].isna().to_numpy(),
        "OCC symbol " + contract.fillna("<missing>") + " does not parse: expected O:ROOT + YYMMDD + C|P + "
        "strike x 1000 in 8 digits, e.g. O:AAPL260116C00150000",
    )
    terms_differ = (
        (occ["expiration"] != pd.to_datetime(frame["expiration"], utc=True))
        | (occ["right"] != frame["contract_type"])
        | ((occ["strike"] - frame["strike"]).abs() > 5e-4)
    )
    refuse(
        terms_differ.fillna(True).to_numpy(),
        "OCC symbol "
        + contract.fillna("")
        + " disagrees with the contract's terms (expiration "
        + frame["expiration"].astype("string").fillna("?")
        + ", "
        + frame["contract_type"].astype("string").fillna("?")
        + ", strike "
        + frame["strike"].astype("string").fillna("?")
        + ")",
    )
    root = occ_root(underlying)
    own_root = occ["root"].str.rstrip("0123456789") == root
    wrong_underlying = (frame["underlying"].astype("string") != underlying).fillna(True) | ~own_root.fillna(False)
    refuse(
        wrong_underlying.to_numpy(),
        "contract "
        + contract.fillna("")
        + " is of underlying "
        + frame["underlying"].astype("string").fillna("?")
        + f" (root {root!r} expected): the chain asked for is {underlying}'s; unknown underlyings are not stored",
    )
    ts = pd.to_datetime(frame["ts"], utc=True)
    refuse(ts.isna().to_numpy(), "no snapshot time (neither the underlying's, the quote's nor the trade's update)")
    expired = (expiry_instants(frame["expiration"]) <= ts).fillna(False)
    refuse(
        expired.to_numpy(),
        "contract "
        + contract.fillna("")
        + " expired on "
        + frame["expiration"].dt.strftime("%Y-%m-%d").fillna("?")
        + ", before the snapshot "
        + ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ").fillna("?"),
    )
    for column, allow_zero in (
        ("strike", False),
        ("underlying_price", False),
        ("last_price", False),
        ("ask", False),
        ("bid", True),
    ):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values < 0 if allow_zero else values <= 0
        allowed = "0 or more" if allow_zero else "more than 0"
        refuse(
            bad.fillna(False).to_numpy(),
            f"{column} " + values.astype("string").fillna("") + f" is not a price: it must be {allowed}",
        )
    refuse(frame["underlying_price"].isna().to_numpy(), "no underlying price: the IV cannot be computed or checked")
    rejected = frame[reasons.notna()].assign(**{REASON: reasons[reasons.notna()].astype(str)})
    return frame[reasons.isna()], rejected
