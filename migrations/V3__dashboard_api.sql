-- The dashboard API: accounts and tokens, teams and invitations, site
-- settings and goals, share links, API keys, the mail outbox.

ALTER TABLE users
    -- set when the owner asks to delete the account: no sign-in from then on;
    -- the retention job erases the row 30 days after `deleted_at`
    ADD COLUMN locked_at        timestamptz,
    -- AES-256-GCM ciphertext (key id inside) of the TOTP secret
    ADD COLUMN totp_secret      bytea,
    ADD COLUMN totp_enabled_at  timestamptz,
    ADD COLUMN password_changed_at timestamptz;

-- Single-use links sent by mail. Only the SHA-256 of the token is kept.
CREATE TABLE email_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id);

-- Refresh tokens, hashed. Each sign-in starts a family (one "session" in the
-- account's active-sessions list); every use rotates to a new token of the
-- same family; presenting a rotated token again revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    revoked_at  timestamptz,
    user_agent  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Failed sign-ins, for rate limiting per account and per IP hash (never the IP).
CREATE TABLE login_failures (
    key         text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_idx ON login_failures (key, failed_at);

-- Accounts at OAuth providers, linked to ours by verified email.
CREATE TABLE oauth_identities (
    provider      text NOT NULL CHECK (provider IN ('google', 'github')),
    subject       text NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- AES-256-GCM ciphertext of the provider's access token
    access_token  bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_idx ON oauth_identities (user_id);

-- A started OAuth sign-in: the state (hashed) and the PKCE verifier (encrypted).
CREATE TABLE oauth_states (
    state_hash    bytea PRIMARY KEY,
    provider      text NOT NULL,
    pkce_verifier bytea NOT NULL,
    expires_at    timestamptz NOT NULL
);

CREATE TABLE invitations (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           text NOT NULL CHECK (email = lower(email)),
    role            text NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'billing')),
    token_hash      bytea NOT NULL UNIQUE,
    invited_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invitations_org_idx ON invitations (organization_id);

ALTER TABLE sites
    -- when set, beacons from other hostnames are dropped; empty admits every hostname
    ADD COLUMN allowed_hostnames text[] NOT NULL DEFAULT '{}',
    -- path patterns (`*` wildcard) whose pageviews are not counted
    ADD COLUMN excluded_paths    text[] NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX sites_org_domain_key ON sites (organization_id, domain) WHERE deleted_at IS NULL;

-- Conversions. A pageview goal matches a path pattern (`*` wildcard), an event
-- goal an event name; a revenue goal is an event goal whose revenue is summed
-- in its currency.
CREATE TABLE goals (
    id           uuid PRIMARY KEY,
    site_id      uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('pageview', 'event', 'revenue')),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 120),
    page_path    text CHECK (page_path IS NULL OR page_path LIKE '/%'),
    event_name   text,
    currency     text CHECK (currency IS NULL OR currency ~ '^[A-Z]{3}$'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'pageview' AND page_path IS NOT NULL AND event_name IS NULL AND currency IS NULL)
        OR (kind = 'event' AND event_name IS NOT NULL AND page_path IS NULL AND currency IS NULL)
        OR (kind = 'revenue' AND event_name IS NOT NULL AND page_path IS NULL AND currency IS NOT NULL))
);
CREATE UNIQUE INDEX goals_site_name_key ON goals (site_id, display_name);

-- Read-only public dashboards. The slug is the unguessable part of the link;
-- an optional password (bcrypt) guards it further.
CREATE TABLE share_links (
    id            uuid PRIMARY KEY,
    site_id       uuid NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    slug          text NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT 'Shared link',
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Stats API keys: shown once, kept as SHA-256; the prefix identifies them in lists.
CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    prefix          text NOT NULL,
    key_hash        bytea NOT NULL UNIQUE,
    scopes          text[] NOT NULL,
    created_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (organization_id);

-- The local mailer adapter: mail is written here (and logged) instead of sent.
-- The SMTP adapter of a later issue drains the same port.
CREATE TABLE mail_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_address  text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
