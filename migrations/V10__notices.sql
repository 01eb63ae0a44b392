-- Notices to account holders (issue 13): a change of the privacy policy, say.
-- Each is shown in the dashboard to every holder whose account existed when it
-- was published (a newer holder accepted the policy in force at sign-up), until
-- they dismiss it; a material one is also mailed to each of those holders once.
CREATE TABLE notices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    link         text,
    material     boolean NOT NULL,
    published_at timestamptz NOT NULL,
    -- A withdrawn notice is no longer shown, and its mailing stops.
    withdrawn_at timestamptz
);
-- Publishing the same title and body again (a retry after a crash) finds the
-- live notice instead of making a second one.
CREATE UNIQUE INDEX notices_live_content_key ON notices (title, md5(body)) WHERE withdrawn_at IS NULL;

-- Who saw a notice (the first time the dashboard fetched it for them) and who
-- dismissed it. Dismissing counts as seeing.
CREATE TABLE notice_views (
    notice_id     bigint NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    first_seen_at timestamptz NOT NULL,
    dismissed_at  timestamptz,
    PRIMARY KEY (notice_id, user_id)
);
CREATE INDEX notice_views_user_idx ON notice_views (user_id);

-- Who was mailed a material notice. The row is inserted in the transaction
-- that queues the mail, so its key makes the mail once per (notice, holder)
-- however often or concurrently the mailing runs.
CREATE TABLE notice_mailings (
    notice_id bigint NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- NULL once retention removed the outbox row (mail is kept 30 days).
    outbox_id bigint REFERENCES mail_outbox (id) ON DELETE SET NULL,
    mailed_at timestamptz NOT NULL,
    PRIMARY KEY (notice_id, user_id)
);
CREATE INDEX notice_mailings_user_idx ON notice_mailings (user_id);
CREATE INDEX notice_mailings_outbox_idx ON notice_mailings (outbox_id);
