-- Visitor requests (issue 13): a site owner finds, exports and erases one
-- visitor's events by identify() user id, identify() email or storage-mode
-- visitor id. See README "Visitor requests".

-- HMAC-SHA256 (secret `visitor-lookup-key`) of the identify() email, trimmed
-- and lower-cased. The email itself stays only inside `sensitive` (AES-GCM,
-- a fresh nonce per row), which cannot be matched on; this keyed hash can be,
-- and tells nothing without the key. Only identify events that carry an email
-- have one.
ALTER TABLE events ADD COLUMN email_key bytea;

-- Partial: only identify events have a user id or an email key, so these two
-- stay small and other events never touch them.
CREATE INDEX events_site_user_id_idx ON events (site_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX events_site_email_key_idx ON events (site_id, email_key) WHERE email_key IS NOT NULL;

-- A storage-mode visitor's events (and the sessions of an identified one,
-- with the primary key for the identify's days). Partial: a storage-mode
-- visitor hash has its lowest bit set, a memory-mode daily hash never
-- (shared/src/visitor.rs), so memory-mode events, the default, pay no index
-- insert; storage-mode ones pay one. The hash leads, so the planner never
-- takes this index for "a site's time range" (the primary key's job). An
-- index on every event's hash was measured: a 4,000-event commit ~1.7-2.6x
-- slower, ~4.7x with one on session_hash too (README "Visitor requests").
CREATE INDEX events_storage_visitor_site_idx ON events (visitor_hash, site_id) WHERE visitor_hash & 1 = 1;
