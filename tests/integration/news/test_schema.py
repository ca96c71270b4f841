"""The news tables of migration 0021: items and their symbol links are hypertables on published_at
keyed by the vendor's identity, stories are keyed by a bigint story_id (0022's embeddings use it)."""

from __future__ import annotations


def _primary_key(conn, table: str) -> list[str]:
    return conn.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    ).fetchone()[0]


def test_items_and_links_are_hypertables_on_published_at(conn):
    rows = conn.execute(
        "SELECT d.hypertable_name, d.column_name FROM timescaledb_information.dimensions d"
        " WHERE d.hypertable_schema = 'news' AND d.hypertable_name IN ('items', 'item_symbols') ORDER BY 1"
    ).fetchall()
    assert rows == [("item_symbols", "published_at"), ("items", "published_at")]
    assert _primary_key(conn, "news.items") == ["source", "id", "published_at"]
    assert _primary_key(conn, "news.item_symbols") == ["symbol", "published_at", "source", "id"]


def test_story_id_is_a_bigint_key(conn):
    assert _primary_key(conn, "news.stories") == ["story_id"]
    types = conn.execute(
        "SELECT table_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'news' AND column_name = 'story_id'"
        " AND table_name IN ('items', 'item_symbols', 'stories') ORDER BY 1"
    ).fetchall()
    assert types == [("item_symbols", "bigint"), ("items", "bigint"), ("stories", "bigint")]


def test_text_array_literals_of_the_news_write_read_back_as_written(conn):
    from storage.news import _array_literal

    cases = [[], ["AAPL"], ['x"y\\z{}', None, "NULL", "", " a b ", "é✓", "line\nbreak\ttab", ",", "{", "}", "\\"]]
    conn.execute("CREATE TEMP TABLE arrays (a text[])")
    with conn.cursor().copy("COPY arrays (a) FROM STDIN") as copy:
        for values in cases:
            copy.write_row((_array_literal(values),))
    assert [r[0] for r in conn.execute("SELECT a FROM arrays").fetchall()] == cases
