-- The stats engine: sums its averages need, stored with the rollups.

ALTER TABLE daily_rollups
    -- (visit, page) pairs with engagement: the divisor of time on page and scroll depth
    ADD COLUMN engaged_pages  bigint NOT NULL DEFAULT 0,
    -- revenue events per currency {"EUR": 3}: the divisor of average revenue
    ADD COLUMN revenue_events jsonb  NOT NULL DEFAULT '{}';

-- Days rolled up before these columns existed are stale: the rollup job
-- re-rolls them, and until then the stats engine reads their raw events.
INSERT INTO rollup_dirty (site_id, day)
SELECT DISTINCT site_id, day FROM daily_rollups
ON CONFLICT DO NOTHING;

-- The stats engine reads the rollups of one dimension over a range of days.
CREATE INDEX daily_rollups_site_dimension_day_idx ON daily_rollups (site_id, dimension, day);
