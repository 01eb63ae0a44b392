//! An organisation's billing: its subscription with plan and usage, its
//! billing records and its billing details. Only owners and members with
//! the billing role (`Permission::ManageBilling`) read or change any of it;
//! API keys never. Changes are audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access;
use super::{ApiPath, ErrorBody, JsonBody, now};
use crate::audit::{self, Action};
use crate::auth::{Caller, Permission, SignedInUser};
use crate::billing::Provider;
use crate::billing::checkout::{self, CheckoutError, CheckoutLink, CheckoutRequest, PaymentApiError, PortalRequest};
use crate::billing::details::{BillingDetails, DetailsError};
use crate::billing::store::{self, RecordView, SubscriptionView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans))
        .routes(routes!(start_checkout))
        .routes(routes!(open_portal))
        .routes(routes!(get_subscription))
        .routes(routes!(get_details, put_details))
        .routes(routes!(list_records))
}

impl From<CheckoutError> for ApiError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::Db(e) => e.into(),
            e @ (CheckoutError::UnknownPlan(_) | CheckoutError::NoPrice { .. }) => ApiError::bad_request(e.to_string()),
            e @ (CheckoutError::OtherProvider { .. } | CheckoutError::AlreadySubscribed { .. } | CheckoutError::NoProvider) => {
                ApiError::conflict(e.to_string())
            }
        }
    }
}

impl From<PaymentApiError> for ApiError {
    fn from(e: PaymentApiError) -> Self {
        match e {
            e @ PaymentApiError::NotPossible(_) => ApiError::conflict(e.to_string()),
            // The provider, not the request, failed: a gateway error naming it.
            e => {
                tracing::warn!(error = %e, "payment provider call failed");
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
        }
    }
}

impl From<DetailsError> for ApiError {
    fn from(e: DetailsError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

#[utoipa::path(get, path = "/api/organizations/{org_id}/billing", tag = "billing", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = SubscriptionView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_subscription(State(state): State<AppState>, caller: Caller, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<SubscriptionView>> {
    let db = state.pool.get().await?;
    access::organization(&db, &caller, org, Permission::ManageBilling).await?;
    Ok(Json(store::subscription(&db, org, now()).await?))
}

#[utoipa::path(get, path = "/api/organizations/{org_id}/billing/records", tag = "billing", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = Vec<RecordView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_records(State(state): State<AppState>, caller: Caller, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<Vec<RecordView>>> {
    let db = state.pool.get().await?;
    access::organization(&db, &caller, org, Permission::ManageBilling).await?;
    Ok(Json(store::records(&db, org).await?))
}

#[utoipa::path(get, path = "/api/organizations/{org_id}/billing/details", tag = "billing", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = BillingDetails), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such organisation, or no billing details yet")))]
async fn get_details(State(state): State<AppState>, caller: Caller, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<BillingDetails>> {
    let db = state.pool.get().await?;
    access::organization(&db, &caller, org, Permission::ManageBilling).await?;
    store::details(&db, &state.cipher, org).await?.map(Json).ok_or_else(|| ApiError::not_found("no billing details yet"))
}

#[utoipa::path(put, path = "/api/organizations/{org_id}/billing/details", tag = "billing", params(("org_id" = Uuid, Path)),
    request_body = BillingDetails,
    responses((status = 200, body = BillingDetails), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_details(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<BillingDetails>,
) -> ApiResult<Json<BillingDetails>> {
    let details = req.validated()?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    access::organization(&tx, &Caller::User(user), org, Permission::ManageBilling).await?;
    store::save_details(&tx, &state.cipher, org, &details).await?;
    // The audit entry names which fields changed, never their values.
    audit::record(&tx, Some(org), Some(user.user_id), Action::BillingDetailsChanged, None,
        serde_json::json!({"country": details.country, "has_vat_id": details.vat_id.is_some()})).await?;
    tx.commit().await?;
    Ok(Json(details))
}

/// A plan as offered: its limits and the providers it can be bought through here.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PlanOffer {
    #[serde(flatten)]
    pub plan: store::Plan,
    /// The plan new organisations start on (not bought).
    pub is_default: bool,
    pub trial_days: Option<i32>,
    /// Providers with a price for this plan and an API key in this deployment.
    pub providers: Vec<Provider>,
}

#[utoipa::path(get, path = "/api/billing/plans", tag = "billing",
    responses((status = 200, body = Vec<PlanOffer>), (status = 401, body = ErrorBody)))]
async fn list_plans(State(state): State<AppState>, _user: SignedInUser) -> ApiResult<Json<Vec<PlanOffer>>> {
    let configured = state.keys.current().payment_api_keys.providers();
    let db = state.pool.get().await?;
    let offers = store::plans(&db)
        .await?
        .into_iter()
        .map(|l| PlanOffer {
            plan: l.plan,
            is_default: l.is_default,
            trial_days: l.trial_days,
            providers: l.priced_by.into_iter().filter(|p| configured.contains(p)).collect(),
        })
        .collect();
    Ok(Json(offers))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartCheckout {
    pub plan_id: String,
    pub provider: Provider,
}

#[utoipa::path(post, path = "/api/organizations/{org_id}/billing/checkout", tag = "billing", params(("org_id" = Uuid, Path)),
    request_body = StartCheckout,
    responses((status = 201, body = CheckoutLink, description = "send the customer to `url`"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such organisation, or the provider is not configured"),
              (status = 409, body = ErrorBody, description = "the organisation pays through another provider, or already subscribes"),
              (status = 502, body = ErrorBody, description = "the provider failed or refused")))]
async fn start_checkout(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<StartCheckout>,
) -> ApiResult<(StatusCode, Json<CheckoutLink>)> {
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ManageBilling).await?;
    let keys = state.keys.current();
    let key = keys.payment_api_keys.get(req.provider).ok_or_else(|| not_configured(req.provider))?;
    let plan = checkout::plan_for(&db, org, &req.plan_id, req.provider).await?;
    let email: Option<String> = db.query_opt("SELECT email FROM users WHERE id = $1", &[&user.user_id]).await?.map(|r| r.get(0));
    let back = format!("{}/billing?org={org}", state.config.public_url());
    let request = CheckoutRequest {
        organization_id: org,
        price_id: plan.price_id,
        customer_email: email,
        external_customer_id: plan.external_customer_id,
        success_url: format!("{back}&checkout=done"),
        cancel_url: back,
        idempotency_key: Uuid::new_v4(),
    };
    let link = state.payments.client(req.provider, key)?.create_checkout(&request).await?;
    checkout::record(&db, org, &plan.plan_id, &link, user.user_id).await?;
    audit::record(
        &db,
        Some(org),
        Some(user.user_id),
        Action::CheckoutStarted,
        Some(&link.external_id),
        serde_json::json!({"provider": req.provider.as_str(), "plan": plan.plan_id}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(link)))
}

fn not_configured(provider: Provider) -> ApiError {
    ApiError::not_found(format!("{} checkout is not configured (no `{}` in the secret store)", provider.as_str(), provider.api_key_name()))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PortalLink {
    pub provider: Provider,
    /// Short-lived: open it now.
    pub url: String,
}

#[utoipa::path(post, path = "/api/organizations/{org_id}/billing/portal", tag = "billing", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = PortalLink, description = "the provider's customer portal: plan changes, payment method, cancellation"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody, description = "no such organisation, or the provider is not configured"),
              (status = 409, body = ErrorBody, description = "no subscription with a provider yet"),
              (status = 502, body = ErrorBody, description = "the provider failed or refused")))]
async fn open_portal(State(state): State<AppState>, user: SignedInUser, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<PortalLink>> {
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ManageBilling).await?;
    let (provider, ids) = checkout::portal_for(&db, org).await?;
    let keys = state.keys.current();
    let key = keys.payment_api_keys.get(provider).ok_or_else(|| not_configured(provider))?;
    let request = PortalRequest {
        external_customer_id: ids.external_customer_id,
        external_subscription_id: ids.external_subscription_id,
        return_url: format!("{}/billing?org={org}", state.config.public_url()),
    };
    let url = state.payments.client(provider, key)?.portal(&request).await?;
    audit::record(
        &db,
        Some(org),
        Some(user.user_id),
        Action::BillingPortalOpened,
        None,
        serde_json::json!({"provider": provider.as_str()}),
    )
    .await?;
    Ok(Json(PortalLink { provider, url }))
}
