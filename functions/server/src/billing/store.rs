//! The SQL of billing: applying one verified event exactly once, reading an
//! organisation's subscription, plan, usage, records and details, and what
//! the retention job does to billing rows.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use uuid::Uuid;

use super::details::BillingDetails;
use super::quota::{EFFECTIVE_PLAN_SQL, QuotaState};
use super::state::{self, Decision, Subscription};
use super::{BillingEvent, Change, Provider, RecordEvent, Status};
use crate::audit::{self, Action};
use crate::field_cipher::{CipherError, FieldCipher};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("stored billing data does not decrypt: {0}")]
    Cipher(#[from] CipherError),
    #[error("stored subscription row is invalid: {0}")]
    Corrupt(String),
}

impl From<BillingError> for crate::error::ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::Db(e) => e.into(),
            BillingError::Pool(e) => crate::adapters::postgres::DbError::from(e).into(),
            other => Self::internal(other),
        }
    }
}

/// What became of a delivery; the webhook answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    /// This event id was processed before (or is being processed now).
    Duplicate,
    /// Older than the last change applied: nothing changed.
    Stale,
    /// Recorded, nothing to do (unknown type, no organisation, ...).
    Ignored(String),
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Ignored(_) => "ignored",
        }
    }
}

const SUBSCRIPTION_COLUMNS: &str = "plan_id, provider, external_subscription_id, external_customer_id, status, \
     current_period_start, current_period_end, cancel_at_period_end, last_event_at";

fn subscription_from(row: &Row) -> Result<Subscription, BillingError> {
    let provider: Option<String> = row.get("provider");
    let status: String = row.get("status");
    Ok(Subscription {
        plan_id: row.get("plan_id"),
        provider: provider.map(|p| Provider::parse(&p).ok_or_else(|| BillingError::Corrupt(format!("provider {p}")))).transpose()?,
        external_subscription_id: row.get("external_subscription_id"),
        external_customer_id: row.get("external_customer_id"),
        status: Status::parse(&status).ok_or_else(|| BillingError::Corrupt(format!("status {status}")))?,
        current_period_start: row.get("current_period_start"),
        current_period_end: row.get("current_period_end"),
        cancel_at_period_end: row.get("cancel_at_period_end"),
        last_event_at: row.get("last_event_at"),
    })
}

/// The organisation an event is about: the id our checkout put in its
/// metadata (if that organisation exists), else the one whose subscription
/// or customer id it names.
async fn organization_of(
    db: &impl GenericClient,
    provider: Provider,
    organization_id: Option<Uuid>,
    subscription: Option<&str>,
    customer: Option<&str>,
) -> Result<Option<Uuid>, BillingError> {
    if let Some(org) = organization_id
        && db.query_opt("SELECT 1 FROM organizations WHERE id = $1 AND deleted_at IS NULL", &[&org]).await?.is_some()
    {
        return Ok(Some(org));
    }
    let row = db
        .query_opt(
            "SELECT organization_id FROM subscriptions WHERE provider = $1
               AND (($2::text IS NOT NULL AND external_subscription_id = $2) OR ($3::text IS NOT NULL AND external_customer_id = $3))
             ORDER BY (external_subscription_id = $2) DESC NULLS LAST LIMIT 1",
            &[&provider.as_str(), &subscription, &customer],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn plan_for_price(db: &impl GenericClient, provider: Provider, price: Option<&str>) -> Result<Option<String>, BillingError> {
    let Some(price) = price else { return Ok(None) };
    let row = db.query_opt("SELECT id FROM plans WHERE price_ids ->> $1 = $2", &[&provider.as_str(), &price]).await?;
    if row.is_none() {
        tracing::warn!(provider = provider.as_str(), price, "a price no plan names; the plan is left as it was");
    }
    Ok(row.map(|r| r.get(0)))
}

fn email_aad(organization: Uuid) -> Vec<u8> {
    format!("subscription_email:{organization}").into_bytes()
}

/// Applies one verified event, once: the event key is inserted in the same
/// transaction as its effect, so a concurrent delivery of the same event
/// waits on that key and then finds it.
pub async fn apply(pool: &Pool, cipher: &FieldCipher, event: &BillingEvent) -> Result<Outcome, BillingError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let fresh = tx
        .execute(
            "INSERT INTO billing_webhook_events (provider, event_id, event_type, occurred_at, outcome)
             VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (provider, event_id) DO NOTHING",
            &[&event.provider.as_str(), &event.event_id, &event.event_type, &event.occurred_at],
        )
        .await?;
    if fresh == 0 {
        return Ok(Outcome::Duplicate);
    }
    let (organization, outcome) = apply_change(&tx, cipher, event).await?;
    let reason = match &outcome {
        Outcome::Ignored(r) => Some(r.as_str()),
        _ => None,
    };
    tx.execute(
        "UPDATE billing_webhook_events SET outcome = $3, reason = $4, organization_id = $5 WHERE provider = $1 AND event_id = $2",
        &[&event.provider.as_str(), &event.event_id, &outcome.as_str(), &reason, &organization],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(provider = event.provider.as_str(), event_type = %event.event_type, outcome = outcome.as_str(), "billing event");
    Ok(outcome)
}

async fn apply_change(
    tx: &deadpool_postgres::Transaction<'_>,
    cipher: &FieldCipher,
    event: &BillingEvent,
) -> Result<(Option<Uuid>, Outcome), BillingError> {
    let provider = event.provider;
    let (org_hint, sub_id, customer_id) = match &event.change {
        Change::Subscription(s) => (s.organization_id, Some(s.external_subscription_id.as_str()), s.external_customer_id.as_deref()),
        Change::PaymentFailed { external_subscription_id } => (None, Some(external_subscription_id.as_str()), None),
        Change::Record(r) => (r.organization_id, r.external_subscription_id.as_deref(), r.external_customer_id.as_deref()),
        Change::Customer { external_customer_id, .. } => (None, None, Some(external_customer_id.as_str())),
        Change::Unknown => {
            return Ok((None, Outcome::Ignored(format!("`{}` is not an event we act on", event.event_type))));
        }
    };
    let Some(org) = organization_of(tx, provider, org_hint, sub_id, customer_id).await? else {
        return Ok((None, Outcome::Ignored("no organisation matches this event".into())));
    };
    // Serialises every event of one organisation: the check and the write see the same row.
    let row = tx
        .query_opt(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE organization_id = $1 FOR UPDATE"), &[&org])
        .await?
        .ok_or_else(|| BillingError::Corrupt(format!("organisation {org} has no subscription row")))?;
    let current = subscription_from(&row)?;

    let mut recorded = false;
    if let Change::Record(r) = &event.change {
        recorded = insert_record(tx, cipher, org, provider, r, event.occurred_at).await?;
    }
    if let Change::Customer { email, .. } = &event.change {
        let sealed = email.as_deref().map(|e| cipher.encrypt(e.as_bytes(), &email_aad(org))).transpose()?;
        tx.execute("UPDATE subscriptions SET customer_email = $2, updated_at = now() WHERE organization_id = $1", &[&org, &sealed]).await?;
        return Ok((Some(org), Outcome::Applied));
    }

    let price = match &event.change {
        Change::Subscription(s) => s.price_id.as_deref(),
        _ => None,
    };
    let plan = plan_for_price(tx, provider, price).await?;
    let outcome = match state::decide(&current, provider, event.occurred_at, &event.change, plan.as_deref()) {
        Decision::Apply(next) => {
            let email = match &event.change {
                Change::Subscription(s) => s.customer_email.as_deref(),
                _ => None,
            };
            write_subscription(tx, cipher, org, &next, email).await?;
            audit::record(
                tx,
                Some(org),
                None,
                Action::SubscriptionChanged,
                Some(provider.as_str()),
                serde_json::json!({
                    "event_type": event.event_type, "from": current.status.as_str(), "to": next.status.as_str(),
                    "plan": next.plan_id, "period_end": next.current_period_end, "cancel_at_period_end": next.cancel_at_period_end,
                }),
            )
            .await?;
            Outcome::Applied
        }
        _ if recorded => Outcome::Applied,
        Decision::Stale => Outcome::Stale,
        Decision::Ignore(reason) => Outcome::Ignored(reason),
    };
    Ok((Some(org), outcome))
}

async fn write_subscription(
    tx: &deadpool_postgres::Transaction<'_>,
    cipher: &FieldCipher,
    org: Uuid,
    s: &Subscription,
    email: Option<&str>,
) -> Result<(), BillingError> {
    let sealed = email.map(|e| cipher.encrypt(e.as_bytes(), &email_aad(org))).transpose()?;
    tx.execute(
        "UPDATE subscriptions SET plan_id = $2, provider = $3, external_subscription_id = $4, external_customer_id = $5,
             status = $6, current_period_start = $7, current_period_end = $8, cancel_at_period_end = $9,
             last_event_at = $10, customer_email = coalesce($11, customer_email), updated_at = now()
         WHERE organization_id = $1",
        &[
            &org,
            &s.plan_id,
            &s.provider.map(Provider::as_str),
            &s.external_subscription_id,
            &s.external_customer_id,
            &s.status.as_str(),
            &s.current_period_start,
            &s.current_period_end,
            &s.cancel_at_period_end,
            &s.last_event_at,
            &sealed,
        ],
    )
    .await?;
    Ok(())
}

fn record_aad(kind: &str, id: Uuid) -> Vec<u8> {
    format!("billing_record_{kind}:{id}").into_bytes()
}

/// A record, once per (provider, kind, external id), with a sealed copy of
/// the buyer's billing details as they are now: the invoice must name them
/// even after the organisation is gone.
async fn insert_record(
    tx: &deadpool_postgres::Transaction<'_>,
    cipher: &FieldCipher,
    org: Uuid,
    provider: Provider,
    r: &RecordEvent,
    occurred_at: DateTime<Utc>,
) -> Result<bool, BillingError> {
    let id = Uuid::new_v4();
    let details = tx.query_opt("SELECT country, sealed FROM billing_details WHERE organization_id = $1", &[&org]).await?;
    let (country, buyer) = match details {
        Some(row) => {
            let d = BillingDetails::open(cipher, org, row.get::<_, &[u8]>(1))?;
            let json = serde_json::to_vec(&d).map_err(|e| BillingError::Corrupt(e.to_string()))?;
            (Some(row.get::<_, String>(0)), Some(cipher.encrypt(&json, &record_aad("buyer", id))?))
        }
        None => (None, None),
    };
    let email = r.customer_email.as_deref().map(|e| cipher.encrypt(e.as_bytes(), &record_aad("email", id))).transpose()?;
    let n = tx
        .execute(
            "INSERT INTO billing_records (id, organization_id, provider, kind, external_id, external_subscription_id,
                 amount_minor, currency, occurred_at, buyer_country, buyer, customer_email, retain_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 date_trunc('year', $9::timestamptz) + interval '11 years')
             ON CONFLICT (provider, kind, external_id) DO NOTHING",
            &[
                &id,
                &org,
                &provider.as_str(),
                &r.kind.as_str(),
                &r.external_id,
                &r.external_subscription_id,
                &r.amount_minor,
                &r.currency,
                &occurred_at,
                &country,
                &buyer,
                &email,
            ],
        )
        .await?;
    if n == 1 {
        audit::record(
            tx,
            Some(org),
            None,
            Action::BillingRecordAdded,
            Some(&r.external_id),
            serde_json::json!({"provider": provider.as_str(), "kind": r.kind.as_str(), "amount_minor": r.amount_minor, "currency": r.currency}),
        )
        .await?;
    }
    Ok(n == 1)
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub monthly_events: i64,
    pub max_sites: i32,
    pub max_members: i32,
    pub retention_days: i32,
}

/// A plan in the list anyone signed in may read: its limits, whether new
/// organisations start on it, its trial, and the providers with a price for it.
#[derive(Debug, Clone)]
pub struct PlanListing {
    pub plan: Plan,
    pub is_default: bool,
    pub trial_days: Option<i32>,
    pub priced_by: Vec<Provider>,
}

/// Every plan, smallest first.
pub async fn plans(db: &impl GenericClient) -> Result<Vec<PlanListing>, BillingError> {
    let rows = db
        .query(
            "SELECT id, name, monthly_events, max_sites, max_members, retention_days, is_default, trial_days, price_ids
             FROM plans ORDER BY monthly_events, id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let prices: serde_json::Value = r.get(8);
            let priced_by = Provider::ALL
                .into_iter()
                .filter(|p| prices.get(p.as_str()).and_then(|v| v.as_str()).is_some_and(|v| !v.is_empty()))
                .collect();
            let plan = Plan { id: r.get(0), name: r.get(1), monthly_events: r.get(2), max_sites: r.get(3), max_members: r.get(4), retention_days: r.get(5) };
            PlanListing { plan, is_default: r.get(6), trial_days: r.get(7), priced_by }
        })
        .collect())
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    pub plan: Plan,
    pub provider: Option<Provider>,
    pub status: Status,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub cancel_at_period_end: bool,
    pub usage: Usage,
    /// The limits in force (the default plan's while paused or cancelled) and
    /// where this period stands against them.
    pub quota: QuotaView,
    /// This period's 80 % / 100 % notices, newest first.
    pub notices: Vec<QuotaNotice>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    /// The plan whose limits apply now.
    pub plan_id: String,
    pub plan_name: String,
    pub monthly_events: i64,
    pub max_sites: i32,
    pub max_members: i32,
    pub state: QuotaState,
    /// `usage.events` as a share of `monthly_events`, in whole percent (rounded down).
    pub percent: i64,
    pub grace_percent: i64,
    /// Events refused this period because the quota and grace were used up.
    pub dropped_events: i64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QuotaNotice {
    pub threshold: i16,
    pub events: i64,
    pub quota: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Events stored this period: the daily rollups of its past days and today's raw events.
    pub events: i64,
    pub sites: i64,
    pub members: i64,
}

pub async fn subscription(db: &impl GenericClient, org: Uuid, now: DateTime<Utc>) -> Result<SubscriptionView, BillingError> {
    let row = db
        .query_one(
            &format!(
                "SELECT {SUBSCRIPTION_COLUMNS}, p.id AS pid, p.name, p.monthly_events, p.max_sites, p.max_members, p.retention_days
                 FROM subscriptions s JOIN plans p ON p.id = s.plan_id WHERE s.organization_id = $1"
            ),
            &[&org],
        )
        .await?;
    let s = subscription_from(&row)?;
    let today = now.date_naive();
    // Whole past days from the rollups (cheap); today from raw events, which
    // the rollup has not reached yet.
    let usage = db
        .query_one(
            &format!(
                "SELECT {},
                   (SELECT count(*) FROM sites WHERE organization_id = $1 AND deleted_at IS NULL),
                   (SELECT count(*) FROM memberships WHERE organization_id = $1)",
                super::quota::period_events_sql("$1::uuid", "$2::timestamptz", "$3::date")
            ),
            &[&org, &s.current_period_start, &today],
        )
        .await?;
    let limits = db
        .query_one(
            &format!(
                "SELECT q.plan_id, q.plan_name, q.quota, q.max_sites, q.max_members,
                        coalesce((SELECT dropped FROM quota_drops d WHERE d.organization_id = q.organization_id AND d.period_start = q.current_period_start), 0)
                 FROM ({EFFECTIVE_PLAN_SQL}) q WHERE q.organization_id = $1"
            ),
            &[&org],
        )
        .await?;
    let notices = db
        .query(
            "SELECT threshold, events, quota, created_at FROM quota_notices WHERE organization_id = $1 AND period_start = $2
             ORDER BY threshold DESC",
            &[&org, &s.current_period_start],
        )
        .await?
        .iter()
        .map(|r| QuotaNotice { threshold: r.get(0), events: r.get(1), quota: r.get(2), created_at: r.get(3) })
        .collect();
    let events: i64 = usage.get(0);
    let monthly_events: i64 = limits.get(2);
    let quota = QuotaView {
        plan_id: limits.get(0),
        plan_name: limits.get(1),
        monthly_events,
        max_sites: limits.get(3),
        max_members: limits.get(4),
        state: QuotaState::of(events, monthly_events),
        percent: i64::try_from(i128::from(events) * 100 / i128::from(monthly_events.max(1))).unwrap_or(i64::MAX),
        grace_percent: crate::billing::quota::GRACE_PERCENT,
        dropped_events: limits.get(5),
    };
    Ok(SubscriptionView {
        quota,
        notices,
        plan: Plan {
            id: row.get("pid"),
            name: row.get("name"),
            monthly_events: row.get("monthly_events"),
            max_sites: row.get("max_sites"),
            max_members: row.get("max_members"),
            retention_days: row.get("retention_days"),
        },
        provider: s.provider,
        status: s.status,
        current_period_start: s.current_period_start,
        current_period_end: s.current_period_end,
        cancel_at_period_end: s.cancel_at_period_end,
        usage: Usage { events: usage.get(0), sites: usage.get(1), members: usage.get(2) },
    })
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub id: Uuid,
    pub provider: Provider,
    pub kind: String,
    pub external_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
}

pub async fn records(db: &impl GenericClient, org: Uuid) -> Result<Vec<RecordView>, BillingError> {
    let rows = db
        .query(
            "SELECT id, provider, kind, external_id, amount_minor, currency, occurred_at FROM billing_records
             WHERE organization_id = $1 ORDER BY occurred_at DESC, id LIMIT 500",
            &[&org],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let provider: String = r.get(1);
            Ok(RecordView {
                id: r.get(0),
                provider: Provider::parse(&provider).ok_or_else(|| BillingError::Corrupt(format!("provider {provider}")))?,
                kind: r.get(2),
                external_id: r.get(3),
                amount_minor: r.get(4),
                currency: r.get(5),
                occurred_at: r.get(6),
            })
        })
        .collect()
}

pub async fn details(db: &impl GenericClient, cipher: &FieldCipher, org: Uuid) -> Result<Option<BillingDetails>, BillingError> {
    let row = db.query_opt("SELECT sealed FROM billing_details WHERE organization_id = $1", &[&org]).await?;
    row.map(|r| BillingDetails::open(cipher, org, r.get::<_, &[u8]>(0)).map_err(BillingError::from)).transpose()
}

pub async fn save_details(db: &impl GenericClient, cipher: &FieldCipher, org: Uuid, d: &BillingDetails) -> Result<(), BillingError> {
    let sealed = d.seal(cipher, org)?;
    db.execute(
        "INSERT INTO billing_details (organization_id, country, sealed) VALUES ($1, $2, $3)
         ON CONFLICT (organization_id) DO UPDATE SET country = EXCLUDED.country, sealed = EXCLUDED.sealed, updated_at = now()",
        &[&org, &d.country, &sealed],
    )
    .await?;
    Ok(())
}

/// How long processed event ids are kept: longer than any provider retries.
pub const WEBHOOK_EVENT_KEEP: chrono::Duration = chrono::Duration::days(90);

/// For the retention job, before it deletes organisations erased before
/// `cutoff`: their billing records stay (tax law) but lose the customer
/// email and the link to the organisation; records past their 10 years go,
/// and so do old event ids.
pub async fn purge(tx: &impl GenericClient, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64, tokio_postgres::Error> {
    let mut n = tx
        .execute(
            "UPDATE billing_records r SET customer_email = NULL, organization_id = NULL
             FROM organizations o WHERE r.organization_id = o.id AND o.deleted_at < $1",
            &[&cutoff],
        )
        .await?;
    n += tx.execute("DELETE FROM billing_records WHERE retain_until < $1", &[&now]).await?;
    n += tx.execute("DELETE FROM billing_webhook_events WHERE received_at < $1", &[&(now - WEBHOOK_EVENT_KEEP)]).await?;
    Ok(n)
}
