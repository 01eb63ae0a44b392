-- The mail outbox becomes a queue the mail worker drains over SMTP (issue 13).
-- Without SMTP configured nothing drains it and rows stay `queued`, as before.
--
--   queued  -> sending (claimed: attempts + 1, a lease until claimed_until)
--   sending -> sent    (the SMTP server answered 250; the bodies are dropped)
--   sending -> queued  (a temporary failure: next_attempt_at after a backoff)
--   sending -> failed  (a permanent 5xx, or no success within the bounded time)
--   sending whose lease ran out (the sender crashed) is claimed again.
--
-- The bodies hold the mailed links (tokens), so they are set to NULL once a
-- message is sent or failed; recipient, subject, status and Message-ID stay.
ALTER TABLE mail_outbox
    ALTER COLUMN body DROP NOT NULL,
    ADD COLUMN html_body        text,
    -- `<https://…>` of a `List-Unsubscribe` header, only on optional mail.
    ADD COLUMN list_unsubscribe text,
    ADD COLUMN status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_until    timestamptz,
    ADD COLUMN last_error       text,
    -- Set at the first claim and kept for every retry, so a copy sent twice
    -- (accepted, then a crash before it was marked sent) is recognisable.
    ADD COLUMN message_id       text UNIQUE,
    ADD COLUMN sent_at          timestamptz,
    ADD CONSTRAINT mail_outbox_done_has_no_body CHECK (status NOT IN ('sent', 'failed') OR (body IS NULL AND html_body IS NULL));

-- The worker's claim: due rows in order of their next attempt.
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at) WHERE status IN ('queued', 'sending');
