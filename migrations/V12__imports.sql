-- Imports (issue 14): data brought in from Plausible, Google Analytics 4 and
-- Umami. It never goes into raw `events`: each import's rows live in the
-- `imported_*` aggregate tables below, which mirror Plausible's own
-- (totals, not averages: visit_duration is the sum of seconds, bounces and
-- visits are counts), keyed by (site_id, import_id, date, dimensions). The
-- stats engine adds them only when a query asks (include.imports).

CREATE TABLE imports (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- plausible | ga4 | ga4-bigquery | umami | umami-db
    source        text NOT NULL CHECK (source IN ('plausible', 'ga4', 'ga4-bigquery', 'umami', 'umami-db')),
    -- the days the import covers, both included, in the site's own days
    range_start   date NOT NULL,
    range_end     date NOT NULL CHECK (range_end >= range_start),
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    -- progress, written from outside the import's transaction so it can be polled
    rows_done     bigint NOT NULL DEFAULT 0,
    rows_total    bigint NOT NULL DEFAULT 0,
    bytes_done    bigint NOT NULL DEFAULT 0,
    bytes_total   bigint NOT NULL DEFAULT 0,
    error         text,
    -- what was read but not kept (unknown files, rows out of range)
    warnings      text[] NOT NULL DEFAULT '{}',
    -- file name or (password-free) database host the data came from
    origin        text NOT NULL DEFAULT '',
    started_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX imports_site_idx ON imports (site_id, created_at DESC);

CREATE TABLE imported_visitors (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    visitors       bigint NOT NULL DEFAULT 0,
    pageviews      bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    visits         bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date)
);

CREATE TABLE imported_sources (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    source         text NOT NULL DEFAULT '',
    referrer       text NOT NULL DEFAULT '',
    utm_source     text NOT NULL DEFAULT '',
    utm_medium     text NOT NULL DEFAULT '',
    utm_campaign   text NOT NULL DEFAULT '',
    utm_content    text NOT NULL DEFAULT '',
    utm_term       text NOT NULL DEFAULT '',
    channel        text NOT NULL DEFAULT '',
    pageviews      bigint NOT NULL DEFAULT 0,
    visitors       bigint NOT NULL DEFAULT 0,
    visits         bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, source, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term, channel)
);

CREATE TABLE imported_pages (
    site_id                   uuid NOT NULL,
    import_id                 uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date                      date NOT NULL,
    hostname                  text NOT NULL DEFAULT '',
    page                      text NOT NULL DEFAULT '',
    visits                    bigint NOT NULL DEFAULT 0,
    visitors                  bigint NOT NULL DEFAULT 0,
    pageviews                 bigint NOT NULL DEFAULT 0,
    total_scroll_depth        bigint NOT NULL DEFAULT 0,
    total_scroll_depth_visits bigint NOT NULL DEFAULT 0,
    total_time_on_page        bigint NOT NULL DEFAULT 0,
    total_time_on_page_visits bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, hostname, page)
);

CREATE TABLE imported_entry_pages (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    entry_page     text NOT NULL DEFAULT '',
    visitors       bigint NOT NULL DEFAULT 0,
    entrances      bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    pageviews      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, entry_page)
);

CREATE TABLE imported_exit_pages (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    exit_page      text NOT NULL DEFAULT '',
    visitors       bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    exits          bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    pageviews      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, exit_page)
);

CREATE TABLE imported_custom_events (
    site_id   uuid NOT NULL,
    import_id uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date      date NOT NULL,
    name      text NOT NULL DEFAULT '',
    link_url  text NOT NULL DEFAULT '',
    path      text NOT NULL DEFAULT '',
    visitors  bigint NOT NULL DEFAULT 0,
    events    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, name, link_url, path)
);

CREATE TABLE imported_locations (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    country        text NOT NULL DEFAULT '',
    region         text NOT NULL DEFAULT '',
    city           text NOT NULL DEFAULT '',
    visitors       bigint NOT NULL DEFAULT 0,
    visits         bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    pageviews      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, country, region, city)
);

CREATE TABLE imported_devices (
    site_id        uuid NOT NULL,
    import_id      uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date           date NOT NULL,
    device         text NOT NULL DEFAULT '',
    visitors       bigint NOT NULL DEFAULT 0,
    visits         bigint NOT NULL DEFAULT 0,
    visit_duration bigint NOT NULL DEFAULT 0,
    bounces        bigint NOT NULL DEFAULT 0,
    pageviews      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, device)
);

CREATE TABLE imported_browsers (
    site_id         uuid NOT NULL,
    import_id       uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date            date NOT NULL,
    browser         text NOT NULL DEFAULT '',
    browser_version text NOT NULL DEFAULT '',
    visitors        bigint NOT NULL DEFAULT 0,
    visits          bigint NOT NULL DEFAULT 0,
    visit_duration  bigint NOT NULL DEFAULT 0,
    bounces         bigint NOT NULL DEFAULT 0,
    pageviews       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, browser, browser_version)
);

CREATE TABLE imported_operating_systems (
    site_id                  uuid NOT NULL,
    import_id                uuid NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    date                     date NOT NULL,
    operating_system         text NOT NULL DEFAULT '',
    operating_system_version text NOT NULL DEFAULT '',
    visitors                 bigint NOT NULL DEFAULT 0,
    visits                   bigint NOT NULL DEFAULT 0,
    visit_duration           bigint NOT NULL DEFAULT 0,
    bounces                  bigint NOT NULL DEFAULT 0,
    pageviews                bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, import_id, date, operating_system, operating_system_version)
);
