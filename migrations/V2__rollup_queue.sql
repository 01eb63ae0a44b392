-- Days whose rollup is out of date because events arrived for them late
-- (after the day's scheduled rollups). The rollup job drains it.
CREATE TABLE rollup_dirty (
    site_id   uuid NOT NULL,
    day       date NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day)
);
