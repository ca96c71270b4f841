"""The options tables of migration 0019: a snapshot row needs a reason exactly where it has no IV."""

from __future__ import annotations

import psycopg
import pytest

INSERT = """
INSERT INTO market.option_quotes (contract, ts, underlying, expiration, strike, contract_type,
    bid, ask, rate, dividend_yield, iv, iv_reason, source)
VALUES ('O:ZZZ990119C00100000', '1999-01-04 15:00Z', 'ZZZ', '1999-01-19', 100, 'call', 1, 2, 0.04, 0, %s, %s, 'test')
"""


def test_option_quotes_is_a_hypertable_keyed_by_contract_and_ts(conn):
    tables = conn.execute(
        "SELECT hypertable_name FROM timescaledb_information.hypertables WHERE hypertable_schema = 'market'"
    ).fetchall()
    assert ("option_quotes",) in tables
    key = conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = 'market.option_quotes'::regclass AND i.indisprimary"
    ).fetchone()
    assert key == (["contract", "ts"],)


@pytest.mark.parametrize(("iv", "reason"), [(None, 0), (0.2, 4)])
def test_an_iv_and_a_reason_never_go_together(conn, iv, reason):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(INSERT, (iv, reason))
