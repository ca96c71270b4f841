-- The instant a filing was accepted (review: a 10-Q accepted at 16:30 on D was paired with D's
-- close in the `--as-of` ratios, its filing date having no time of day).
--
-- market.financial_statements.accepted_at: the vendor's acceptance time (Polygon's
-- acceptance_datetime, EDGAR's), NULL when it gives none and for the rows stored before. Not part
-- of the key: a filing is still versioned by its filing_date. market.financials_as_of
-- (db/routines/80_fundamentals.sql) counts a filing from its acceptance instant and, without one,
-- from the first session close after its filing date.
ALTER TABLE market.financial_statements ADD COLUMN accepted_at timestamptz;
