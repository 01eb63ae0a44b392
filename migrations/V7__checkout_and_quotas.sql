-- Checkouts started through the API, the quota counter and its notices,
-- and the events refused because a quota was used up.

-- A checkout session/link made at a provider for an organisation: which plan
-- was chosen, by whom, and where the customer was sent.
CREATE TABLE billing_checkouts (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider         text NOT NULL CHECK (provider IN ('stripe', 'paddle', 'lemonsqueezy', 'polar')),
    plan_id          text NOT NULL REFERENCES plans (id),
    external_id      text NOT NULL,
    url              text NOT NULL,
    created_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_checkouts_org_idx ON billing_checkouts (organization_id, created_at);

-- The events counted for the current period by the `quota` job (rollups of
-- past days + today's raw events), so the ingest reads one row, not a sum.
-- `usage_period_start` is the period the count belongs to: a renewal moves
-- `current_period_start`, and a count of the old period then stops counting.
ALTER TABLE subscriptions
    ADD COLUMN period_events      bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_period_start timestamptz,
    ADD COLUMN usage_counted_at   timestamptz;

-- 80 % and 100 % of a period's quota, each noticed once: mailed to the owners
-- and shown in the dashboard.
CREATE TABLE quota_notices (
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period_start     timestamptz NOT NULL,
    threshold        smallint NOT NULL CHECK (threshold IN (80, 100)),
    events           bigint NOT NULL,
    quota            bigint NOT NULL,
    mailed_to        integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, period_start, threshold)
);

-- Events refused because the quota and its grace were used up, per period:
-- counted, never silently lost.
CREATE TABLE quota_drops (
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    period_start     timestamptz NOT NULL,
    dropped          bigint NOT NULL DEFAULT 0,
    last_dropped_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, period_start)
);
