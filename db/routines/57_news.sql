-- The news scanner: symbols with the most negative or positive news of the last hours, beside how
-- unusual their latest daily volume is.
--
--   scan.news_sentiment(hours, direction, min_items, limit, as_of)
--     per symbol, the news items (kind 'news', with our sentiment) published in (as_of - hours, as_of]:
--     their count, mean sentiment (ours; the vendor's mean beside it where it sends one), the newest
--     publication; and the z-score of the volume of the symbol's latest daily bar at or before as_of
--     against the 20 daily bars before it (NULL with fewer than 20 or a zero deviation).
--     direction 'down' ranks the most negative mean first, 'up' the most positive, 'both' by absolute
--     mean; ties by more items, then symbol. Symbols with fewer than min_items items are left out.
--     An item counts as its version known at as_of (as the sentiment features count it at a bar's
--     close, features/news_sentiment.py): the stored version (news.items, news.item_symbols) from
--     its updated_at on, a superseded one (news.item_versions, news.item_symbol_versions, migration
--     0026) over [updated_at, superseded_at). So an update made after as_of (a new sentiment, an
--     added or dropped symbol) does not count at as_of, and an item whose first stored version was
--     updated after as_of does not count at all; at as_of = now() that is the stored version.
-- Reads news.item_symbols' and news.item_symbol_versions' primary keys (symbol, published_at, ...)
-- by their time range (chunk exclusion on published_at), each current link's item by its whole key,
-- and market.bars_daily's primary key per symbol (21 rows backward).

CREATE OR REPLACE FUNCTION scan.news_sentiment(
    p_hours integer DEFAULT 24,
    p_direction text DEFAULT 'both',
    p_min_items integer DEFAULT 1,
    p_limit integer DEFAULT 20,
    p_as_of timestamptz DEFAULT now()
)
RETURNS TABLE (symbol text, items bigint, sentiment double precision, vendor_sentiment double precision,
               volume_z double precision, latest timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM scan.check_positive('hours', p_hours);
    PERFORM scan.check_positive('min_items', p_min_items);
    PERFORM scan.check_positive('limit', p_limit);
    PERFORM scan.check_direction(p_direction);
    RETURN QUERY
    WITH known AS (
        SELECT l.symbol, l.sentiment, l.vendor_sentiment, l.published_at
          FROM news.item_symbols l
          JOIN news.items i ON i.source = l.source AND i.id = l.id AND i.published_at = l.published_at
         WHERE l.kind = 'news' AND l.sentiment IS NOT NULL
           AND l.published_at > p_as_of - make_interval(hours => p_hours) AND l.published_at <= p_as_of
           AND i.published_at > p_as_of - make_interval(hours => p_hours) AND i.published_at <= p_as_of
           AND i.updated_at <= p_as_of
        UNION ALL
        SELECT l.symbol, l.sentiment, l.vendor_sentiment, l.published_at
          FROM news.item_symbol_versions l
         WHERE l.kind = 'news' AND l.sentiment IS NOT NULL
           AND l.published_at > p_as_of - make_interval(hours => p_hours) AND l.published_at <= p_as_of
           AND l.updated_at <= p_as_of AND l.superseded_at > p_as_of
    ), news AS (
        SELECT k.symbol, count(*) AS items, avg(k.sentiment) AS sentiment, avg(k.vendor_sentiment) AS vendor,
               max(k.published_at) AS latest
          FROM known k
         GROUP BY k.symbol
        HAVING count(*) >= p_min_items
    )
    SELECT n.symbol, n.items, n.sentiment, n.vendor, v.z, n.latest
      FROM news n
      LEFT JOIN LATERAL (
          SELECT CASE WHEN count(*) = 21 AND stddev_samp(b.volume) FILTER (WHERE b.rn > 1) > 0
                      THEN (max(b.volume) FILTER (WHERE b.rn = 1) - avg(b.volume) FILTER (WHERE b.rn > 1))
                           / stddev_samp(b.volume) FILTER (WHERE b.rn > 1)
                 END AS z
            FROM (SELECT d.volume::double precision AS volume, row_number() OVER (ORDER BY d.ts DESC) AS rn
                    FROM market.bars_daily d
                   WHERE d.symbol = n.symbol AND d.timeframe = '1day' AND d.ts <= p_as_of
                   ORDER BY d.ts DESC LIMIT 21) b
      ) v ON true
     WHERE p_direction = 'both' OR (p_direction = 'up' AND n.sentiment > 0) OR (p_direction = 'down' AND n.sentiment < 0)
     ORDER BY CASE p_direction WHEN 'down' THEN n.sentiment WHEN 'up' THEN -n.sentiment ELSE -abs(n.sentiment) END,
              n.items DESC, n.symbol
     LIMIT p_limit;
END;
$$;
