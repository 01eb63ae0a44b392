//! An organisation's billing: its subscription with plan and usage, its
//! billing records and its billing details. Only owners and members with
//! the billing role (`Permission::ManageBilling`) read or change any of it;
//! API keys never. Changes are audited.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access;
use super::{ApiPath, ErrorBody, JsonBody, now};
use crate::audit::{self, Action};
use crate::auth::{Caller, Permission, SignedInUser};
use crate::billing::details::{BillingDetails, DetailsError};
use crate::billing::store::{self, RecordView, SubscriptionView};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_subscription))
        .routes(routes!(get_details, put_details))
        .routes(routes!(list_records))
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
