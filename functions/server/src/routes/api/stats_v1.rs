//! Plausible's Stats API v1: `GET /api/v1/stats/{realtime/visitors,aggregate,timeseries,breakdown}`,
//! callable as `POST /api/v2/query` is (API keys with `stats:read`, or
//! members whose role may see stats). The translation lives in
//! `plausible::stats_v1`; this file checks access and answers.

use axum::Json;
use axum::extract::State;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiQuery, ErrorBody, access, now};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::plausible::stats_v1::{self, Endpoint, Params, RealtimeParams, V1Error};
use crate::state::AppState;
use crate::stats::{self, StatsSite};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(realtime_visitors))
        .routes(routes!(aggregate))
        .routes(routes!(timeseries))
        .routes(routes!(breakdown))
}

impl From<V1Error> for ApiError {
    fn from(e: V1Error) -> Self {
        match e {
            V1Error::Stats(s) => s.into(),
            e if e.is_client_error() => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

/// The site named by `site_id`, if the caller may read its stats.
async fn readable_site(state: &AppState, caller: &Caller, site_id: Option<&str>) -> ApiResult<StatsSite> {
    let site_id = site_id.map(str::trim).filter(|s| !s.is_empty()).ok_or(V1Error::MissingSiteId)?;
    let db = state.pool.get().await?;
    let site = access::site(&db, caller, site_id, Permission::ViewStats).await?.site;
    Ok(StatsSite { id: shared::SiteId::from_uuid(site.id), timezone: site.timezone })
}

async fn run(state: AppState, caller: Caller, endpoint: Endpoint, params: Params) -> ApiResult<Json<Value>> {
    let site = readable_site(&state, &caller, params.site_id.as_deref()).await?;
    Ok(Json(stats_v1::answer(&state.pool, &*state.cache, &site, endpoint, &params, now()).await?))
}

/// Visitors with an event in the last 5 minutes: a bare integer, as Plausible answers.
#[utoipa::path(get, path = "/api/v1/stats/realtime/visitors", tag = "stats", params(RealtimeParams),
    responses((status = 200, body = i64, content_type = "application/json", description = "the number of current visitors, a bare JSON integer"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn realtime_visitors(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<RealtimeParams>,
) -> ApiResult<Json<i64>> {
    let site = readable_site(&state, &caller, params.site_id.as_deref()).await?;
    Ok(Json(stats::current_visitors(&state.pool, site.id, now()).await?))
}

/// Stats API v1 aggregate: `{"results": {"visitors": {"value": 12}, ...}}`
/// (`comparison_value` and `change` with `compare=previous_period`).
#[utoipa::path(get, path = "/api/v1/stats/aggregate", tag = "stats", params(Params),
    responses((status = 200, body = Object, description = "{results: {<metric>: {value, comparison_value?, change?}}}"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn aggregate(State(state): State<AppState>, caller: Caller, ApiQuery(params): ApiQuery<Params>) -> ApiResult<Json<Value>> {
    run(state, caller, Endpoint::Aggregate, params).await
}

/// Stats API v1 timeseries: one object per bucket of the period, empty ones included.
#[utoipa::path(get, path = "/api/v1/stats/timeseries", tag = "stats", params(Params),
    responses((status = 200, body = Object, description = "{results: [{date, <metric>: value, ...}]}"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn timeseries(State(state): State<AppState>, caller: Caller, ApiQuery(params): ApiQuery<Params>) -> ApiResult<Json<Value>> {
    run(state, caller, Endpoint::Timeseries, params).await
}

/// Stats API v1 breakdown by `property`: rows keyed by the property's name
/// without its prefix (a custom prop by its key).
#[utoipa::path(get, path = "/api/v1/stats/breakdown", tag = "stats", params(Params),
    responses((status = 200, body = Object, description = "{results: [{<property>: value, <metric>: value, ...}]}"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn breakdown(State(state): State<AppState>, caller: Caller, ApiQuery(params): ApiQuery<Params>) -> ApiResult<Json<Value>> {
    run(state, caller, Endpoint::Breakdown, params).await
}
