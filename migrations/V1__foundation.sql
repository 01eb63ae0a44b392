-- EngageTrack foundation schema. Plain PostgreSQL 15; TimescaleDB when present.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE users (
    id                uuid PRIMARY KEY,
    email             text NOT NULL CHECK (email = lower(email) AND position('@' in email) > 1),
    name              text,
    password_hash     text,
    email_verified_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE memberships (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'billing')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE sites (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    domain          text NOT NULL CHECK (length(domain) BETWEEN 1 AND 253),
    name            text NOT NULL,
    timezone        text NOT NULL DEFAULT 'UTC',
    -- raw events older than this are deleted; daily rollups are kept
    retention_days  integer NOT NULL DEFAULT 730 CHECK (retention_days > 0),
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);
CREATE INDEX sites_organization_idx ON sites (organization_id);

-- Append-only. The id is a UUIDv7 given at the edge and ts is that id's own
-- timestamp, so (site_id, ts, id) is unique exactly when id is, and the key
-- doubles as the index for "this site, this time range".
CREATE TABLE events (
    id               uuid NOT NULL,
    site_id          uuid NOT NULL,
    ts               timestamptz NOT NULL,
    event_type       text NOT NULL,
    name             text NOT NULL,
    visitor_hash     bigint NOT NULL,
    session_hash     bigint NOT NULL,
    hostname         text NOT NULL,
    pathname         text NOT NULL,
    referrer         text,
    referrer_host    text,
    referrer_source  text,
    channel          text,
    utm_source       text,
    utm_medium       text,
    utm_campaign     text,
    utm_term         text,
    utm_content      text,
    country          text,
    region           text,
    city             text,
    browser          text,
    browser_version  text,
    os               text,
    os_version       text,
    device           text,
    screen_width     integer,
    screen_height    integer,
    engaged_ms       integer,
    scroll_depth     smallint,
    revenue_minor    bigint,
    revenue_currency text,
    order_id         text,
    target           text,
    user_id          text,
    props            jsonb NOT NULL DEFAULT '{}',
    -- AES-256-GCM ciphertext of mailto/tel/identify details, with its key id
    sensitive        bytea,
    PRIMARY KEY (site_id, ts, id)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('events', 'ts', chunk_time_interval => INTERVAL '1 day');
        EXECUTE 'ALTER TABLE events SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''site_id'', '
             || 'timescaledb.compress_orderby = ''ts'')';
        PERFORM add_compression_policy('events', INTERVAL '7 days');
    ELSE
        -- Plain PostgreSQL (RDS has no Timescale): rows arrive in time order,
        -- so a BRIN index makes retention and range scans cheap.
        CREATE INDEX events_ts_brin ON events USING brin (ts);
    END IF;
END
$$;

-- The local salt store: one salt per UTC day, destroyed soon after the day.
CREATE TABLE salts (
    day        date PRIMARY KEY,
    salt       bytea NOT NULL CHECK (length(salt) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Daily summaries per site, day and dimension value (dimension '' = totals).
CREATE TABLE daily_rollups (
    site_id          uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    day              date NOT NULL,
    dimension        text NOT NULL,
    value            text NOT NULL,
    visitors         bigint NOT NULL DEFAULT 0,
    visits           bigint NOT NULL DEFAULT 0,
    pageviews        bigint NOT NULL DEFAULT 0,
    bounces          bigint NOT NULL DEFAULT 0,
    engaged_ms       bigint NOT NULL DEFAULT 0,
    scroll_depth_sum bigint NOT NULL DEFAULT 0,
    events           bigint NOT NULL DEFAULT 0,
    revenue          jsonb NOT NULL DEFAULT '{}',
    rolled_up_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, day, dimension, value)
);

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid REFERENCES organizations (id) ON DELETE SET NULL,
    actor_user_id   uuid REFERENCES users (id) ON DELETE SET NULL,
    action          text NOT NULL,
    target          text,
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_org_time_idx ON audit_log (organization_id, created_at);
