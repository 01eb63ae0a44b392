-- Billing: plans, one subscription per organisation, the provider events
-- applied to it (each once), billing records kept for tax law, and the
-- organisation's billing details (encrypted).

CREATE TABLE plans (
    id              text PRIMARY KEY CHECK (id ~ '^[a-z0-9-]{1,40}$'),
    name            text NOT NULL,
    monthly_events  bigint NOT NULL CHECK (monthly_events > 0),
    max_sites       integer NOT NULL CHECK (max_sites > 0),
    max_members     integer NOT NULL CHECK (max_members > 0),
    retention_days  integer NOT NULL CHECK (retention_days > 0),
    -- Set for the trial plan only: how long a new organisation may use it.
    trial_days      integer CHECK (trial_days > 0),
    -- provider -> that provider's price (Stripe price, Paddle price, LemonSqueezy
    -- variant, Polar product) id. Each deployment fills in its own ids.
    price_ids       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(price_ids) = 'object'),
    is_default      boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- Exactly one plan is where new organisations start.
CREATE UNIQUE INDEX plans_one_default ON plans (is_default) WHERE is_default;
CREATE INDEX plans_price_ids_idx ON plans USING gin (price_ids);

INSERT INTO plans (id, name, monthly_events, max_sites, max_members, retention_days, trial_days, is_default) VALUES
    ('trial',    'Free trial', 10000,    3,  3,  730, 30,   true),
    ('starter',  'Starter',    100000,   10, 5,  730, NULL, false),
    ('growth',   'Growth',     1000000,  50, 20, 1095, NULL, false),
    ('business', 'Business',   10000000, 200, 100, 1825, NULL, false);

CREATE TABLE subscriptions (
    organization_id           uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    plan_id                   text NOT NULL REFERENCES plans (id),
    -- NULL while on the trial; set by the first provider event, then fixed.
    provider                  text CHECK (provider IN ('stripe', 'paddle', 'lemonsqueezy', 'polar')),
    external_customer_id      text,
    external_subscription_id  text,
    status                    text NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'paused', 'cancelled')),
    current_period_start      timestamptz NOT NULL,
    current_period_end        timestamptz NOT NULL,
    cancel_at_period_end      boolean NOT NULL DEFAULT false,
    -- The provider's time of the last change applied: an older event is stale.
    last_event_at             timestamptz,
    -- AES-256-GCM (FieldCipher) of the customer's billing email, as the provider last sent it.
    customer_email            bytea,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX subscriptions_external_key ON subscriptions (provider, external_subscription_id)
    WHERE external_subscription_id IS NOT NULL;
CREATE INDEX subscriptions_customer_idx ON subscriptions (provider, external_customer_id)
    WHERE external_customer_id IS NOT NULL;

-- Every organisation starts on the default (trial) plan, whichever code path
-- made it (sign-up, the API, the seed): a trigger, so none can forget.
CREATE FUNCTION start_trial_subscription() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO subscriptions (organization_id, plan_id, status, current_period_start, current_period_end)
    SELECT NEW.id, p.id, 'trialing', NEW.created_at, NEW.created_at + make_interval(days => coalesce(p.trial_days, 30))
    FROM plans p WHERE p.is_default
    ON CONFLICT (organization_id) DO NOTHING;
    RETURN NEW;
END
$$;
CREATE TRIGGER organizations_start_trial AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION start_trial_subscription();

INSERT INTO subscriptions (organization_id, plan_id, status, current_period_start, current_period_end)
SELECT o.id, p.id, 'trialing', o.created_at, o.created_at + make_interval(days => coalesce(p.trial_days, 30))
FROM organizations o CROSS JOIN plans p WHERE p.is_default;

-- Each provider event id once: inserted in the transaction that applies the
-- event, so a repeated or concurrent delivery finds the key and does nothing.
CREATE TABLE billing_webhook_events (
    provider         text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    -- applied | stale | ignored (unknown type, no matching organisation, other provider)
    outcome          text NOT NULL,
    reason           text,
    organization_id  uuid REFERENCES organizations (id) ON DELETE SET NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE INDEX billing_webhook_events_received_idx ON billing_webhook_events (received_at);

-- Invoices, payments and refunds. Tax law (e.g. §147 AO, §14b UStG) keeps them
-- 10 years, so they outlive the 30-day account purge: the purge cuts the link
-- to the organisation and the customer email; what an invoice must show
-- (amounts, dates, the buyer's name, address and VAT id) stays, encrypted.
CREATE TABLE billing_records (
    id               uuid PRIMARY KEY,
    organization_id  uuid REFERENCES organizations (id) ON DELETE SET NULL,
    provider         text NOT NULL CHECK (provider IN ('stripe', 'paddle', 'lemonsqueezy', 'polar')),
    kind             text NOT NULL CHECK (kind IN ('invoice', 'payment', 'refund')),
    external_id      text NOT NULL,
    external_subscription_id text,
    amount_minor     bigint NOT NULL,
    currency         text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    occurred_at      timestamptz NOT NULL,
    -- ISO 3166-1 alpha-2 of the buyer, for VAT reporting (not personal on its own).
    buyer_country    text CHECK (buyer_country ~ '^[A-Z]{2}$'),
    -- FieldCipher of the billing details at the time: what the invoice must name.
    buyer            bytea,
    -- FieldCipher of the customer email: contact only, dropped by the purge.
    customer_email   bytea,
    retain_until     timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, kind, external_id)
);
CREATE INDEX billing_records_org_idx ON billing_records (organization_id, occurred_at);

-- One per organisation. Everything but the country is in `sealed`
-- (FieldCipher JSON: company, vat_id, city, postal_code, address_lines).
CREATE TABLE billing_details (
    organization_id  uuid PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    country          text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    sealed           bytea NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
