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
-- Reads news.item_symbols' primary key (symbol, published_at, ...) by its time range (chunk
-- exclusion on published_at) and market.bars_daily's primary key per symbol (21 rows backward).

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
    WITH news AS (
        SELECT l.symbol, count(*) AS items, avg(l.sentiment) AS sentiment, avg(l.vendor_sentiment) AS vendor,
               max(l.published_at) AS latest
          FROM news.item_symbols l
         WHERE l.kind = 'news' AND l.sentiment IS NOT NULL
           AND l.published_at > p_as_of - make_interval(hours => p_hours) AND l.published_at <= p_as_of
         GROUP BY l.symbol
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
