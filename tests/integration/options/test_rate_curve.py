"""market.rate_curve: seeded flat from settings, re-seeded when the setting changes, a curve
written by anything else used as stored."""

from __future__ import annotations

from datetime import date

from storage.options import rate_curve_for

DAYS = (date(1990, 1, 2), date(1990, 1, 3), date(1990, 1, 4))


def test_the_flat_seed_follows_the_setting_and_a_real_curve_wins(conn):
    conn.execute("DELETE FROM market.rate_curve WHERE as_of BETWEEN %s AND %s", (DAYS[0], DAYS[-1]))
    try:
        first = rate_curve_for(conn, DAYS[0], 0.03)
        assert first[["tenor_days", "rate", "source"]].values.tolist() == [[0, 0.03, "settings"]]
        assert rate_curve_for(conn, DAYS[1], 0.03)["rate"].tolist() == [0.03]  # the seed carries forward
        changed = rate_curve_for(conn, DAYS[1], 0.05)
        assert changed["rate"].tolist() == [0.05]
        stored = conn.execute(
            "SELECT as_of, rate FROM market.rate_curve WHERE as_of BETWEEN %s AND %s ORDER BY as_of",
            (DAYS[0], DAYS[-1]),
        ).fetchall()
        assert stored == [(DAYS[0], 0.03), (DAYS[1], 0.05)]  # the day before keeps the rate it priced with
        conn.execute(
            "INSERT INTO market.rate_curve (as_of, tenor_days, rate, source) VALUES (%s, 30, 0.051, 'treasury'),"
            " (%s, 365, 0.047, 'treasury')",
            (DAYS[2], DAYS[2]),
        )
        curve = rate_curve_for(conn, DAYS[2], 0.09)
        assert curve[["tenor_days", "rate"]].values.tolist() == [[30, 0.051], [365, 0.047]]
    finally:
        conn.execute("DELETE FROM market.rate_curve WHERE as_of BETWEEN %s AND %s", (DAYS[0], DAYS[-1]))
