-- Email reports and traffic-spike alerts (issue 13 part 2, part 5).
--
-- A member of a site's organisation opts in per site: a weekly and/or a
-- monthly report, and an alert when the site's current visitors reach a
-- threshold. Reports are due at the member's local morning, so a user has a
-- timezone; NULL follows each site's own.
ALTER TABLE users ADD COLUMN timezone text;

CREATE TABLE mail_subscriptions (
    site_id          uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    weekly           boolean NOT NULL DEFAULT false,
    monthly          boolean NOT NULL DEFAULT false,
    -- Current visitors (the realtime view's definition) that trigger an alert; NULL: no alerts.
    spike_threshold  integer CHECK (spike_threshold IS NULL OR spike_threshold BETWEEN 1 AND 1000000),
    -- The last alert queued: the job's claim moves it only when it is an hour old or more.
    spike_alerted_at timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, user_id)
);
CREATE INDEX mail_subscriptions_user_idx ON mail_subscriptions (user_id);
CREATE INDEX mail_subscriptions_spike_idx ON mail_subscriptions (site_id) WHERE spike_threshold IS NOT NULL;

-- One row per report queued: inserted in the transaction that queues the
-- mail, so a job run twice (or two at once) sends each period once.
CREATE TABLE report_deliveries (
    site_id      uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    frequency    text NOT NULL CHECK (frequency IN ('weekly', 'monthly')),
    period_start date NOT NULL,
    period_end   date NOT NULL CHECK (period_end >= period_start),
    queued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, user_id, frequency, period_start)
);
