//! The payment-provider API port: make a checkout for a plan, and a link to
//! the provider's customer portal (where the customer changes plan, payment
//! method, or cancels). One adapter per provider in `adapters::payments`,
//! each speaking its provider's real request shape; tests point them at a
//! loopback fake of the same wire format.

use uuid::Uuid;

use super::Provider;

/// What a checkout is for. The organisation id travels in the provider's
/// metadata field, so the subscription events that follow name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub organization_id: Uuid,
    /// The provider's price (Stripe price, Paddle price, LemonSqueezy
    /// variant, Polar product) of the chosen plan.
    pub price_id: String,
    /// Prefilled at the provider; the customer may change it there.
    pub customer_email: Option<String>,
    /// The provider's customer, when the organisation already has one.
    pub external_customer_id: Option<String>,
    pub success_url: String,
    pub cancel_url: String,
    /// Sent as the provider's idempotency key where it has one (Stripe).
    pub idempotency_key: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalRequest {
    pub external_customer_id: Option<String>,
    pub external_subscription_id: Option<String>,
    pub return_url: String,
}

/// A checkout made at the provider: its id there and where to send the customer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CheckoutLink {
    pub provider: Provider,
    pub external_id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PaymentApiError {
    #[error("{provider} could not be reached: {reason}")]
    Unreachable { provider: &'static str, reason: String },
    #[error("{provider} refused the request ({status}): {message}")]
    Refused { provider: &'static str, status: u16, message: String },
    #[error("{provider} answered something unexpected: {reason}")]
    BadAnswer { provider: &'static str, reason: String },
    #[error("{0}")]
    NotPossible(String),
}

#[async_trait::async_trait]
pub trait PaymentApi: Send + Sync {
    fn provider(&self) -> Provider;
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutLink, PaymentApiError>;
    /// The customer-portal URL (short-lived at every provider).
    async fn portal(&self, request: &PortalRequest) -> Result<String, PaymentApiError>;
}

/// Why a checkout or portal link cannot be made for this organisation (4xx).
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("there is no plan `{0}`")]
    UnknownPlan(String),
    #[error("the {plan} plan cannot be bought through {provider}: it has no {provider} price (plans.price_ids)")]
    NoPrice { plan: String, provider: &'static str },
    #[error("this organisation pays through {chosen}; an organisation chooses its provider once")]
    OtherProvider { chosen: &'static str },
    #[error("this organisation already has a {status} {provider} subscription; change or cancel the plan in the billing portal")]
    AlreadySubscribed { provider: &'static str, status: &'static str },
    #[error("this organisation has no subscription with a provider yet; choose a plan first")]
    NoProvider,
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// What the checkout needs from our side, checked against the organisation's
/// subscription (read in the caller's transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutPlan {
    pub plan_id: String,
    pub price_id: String,
    pub external_customer_id: Option<String>,
}

pub async fn plan_for(
    db: &impl deadpool_postgres::GenericClient,
    org: Uuid,
    plan_id: &str,
    provider: Provider,
) -> Result<CheckoutPlan, CheckoutError> {
    let plan = db
        .query_opt("SELECT price_ids ->> $2 FROM plans WHERE id = $1", &[&plan_id, &provider.as_str()])
        .await?
        .ok_or_else(|| CheckoutError::UnknownPlan(plan_id.chars().take(40).collect()))?;
    let price_id: Option<String> = plan.get(0);
    let price_id =
        price_id.filter(|p| !p.is_empty()).ok_or(CheckoutError::NoPrice { plan: plan_id.to_owned(), provider: provider.as_str() })?;
    let sub = db
        .query_one(
            "SELECT provider, status, external_subscription_id, external_customer_id FROM subscriptions WHERE organization_id = $1",
            &[&org],
        )
        .await?;
    let chosen = sub.get::<_, Option<String>>(0).as_deref().and_then(Provider::parse);
    let status = super::Status::parse(&sub.get::<_, String>(1));
    if let Some(chosen) = chosen {
        if chosen != provider {
            return Err(CheckoutError::OtherProvider { chosen: chosen.as_str() });
        }
        let live = matches!(status, Some(super::Status::Active | super::Status::PastDue | super::Status::Paused));
        if live && sub.get::<_, Option<String>>(2).is_some() {
            return Err(CheckoutError::AlreadySubscribed {
                provider: chosen.as_str(),
                status: status.map_or("live", super::Status::as_str),
            });
        }
    }
    Ok(CheckoutPlan { plan_id: plan_id.to_owned(), price_id, external_customer_id: sub.get(3) })
}

/// The provider and ids the portal link is made for.
pub async fn portal_for(db: &impl deadpool_postgres::GenericClient, org: Uuid) -> Result<(Provider, PortalIds), CheckoutError> {
    let sub = db
        .query_one("SELECT provider, external_customer_id, external_subscription_id FROM subscriptions WHERE organization_id = $1", &[&org])
        .await?;
    let provider = sub.get::<_, Option<String>>(0).as_deref().and_then(Provider::parse).ok_or(CheckoutError::NoProvider)?;
    Ok((provider, PortalIds { external_customer_id: sub.get(1), external_subscription_id: sub.get(2) }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalIds {
    pub external_customer_id: Option<String>,
    pub external_subscription_id: Option<String>,
}

/// Remembers a checkout made at the provider (who chose which plan).
pub async fn record(
    db: &impl deadpool_postgres::GenericClient,
    org: Uuid,
    plan_id: &str,
    link: &CheckoutLink,
    user: Uuid,
) -> Result<(), tokio_postgres::Error> {
    db.execute(
        "INSERT INTO billing_checkouts (id, organization_id, provider, plan_id, external_id, url, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&Uuid::new_v4(), &org, &link.provider.as_str(), &plan_id, &link.external_id, &link.url, &user],
    )
    .await?;
    Ok(())
}
