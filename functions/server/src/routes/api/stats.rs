//! The stats API: `POST /api/v2/query` in Plausible's Stats API v2 shape
//! (signed-in users with a viewing role, or API keys with `stats:read`),
//! `POST /api/v2/funnel`, the
//! realtime view, the CSV export, and the same query for public share links.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ApiQuery, ErrorBody, access, now};
use crate::audit::{self, Action};
use crate::blobs::{self, Delivery, ExportLink};
use crate::auth::{Caller, Permission};
use crate::cache;
use crate::error::{ApiError, ApiResult};
use crate::sites::Site;
use crate::state::AppState;
use crate::stats::{self, FunnelRequest, QueryRequest, StatsError, StatsSite};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query))
        .routes(routes!(funnel))
        .routes(routes!(realtime))
        .routes(routes!(property_keys))
        .routes(routes!(export_csv))
        .routes(routes!(shared_query))
        .routes(routes!(shared_realtime))
}

impl From<StatsError> for ApiError {
    fn from(e: StatsError) -> Self {
        if e.is_client_error() {
            return ApiError::bad_request(e.to_string());
        }
        match e {
            StatsError::Pool(p) => p.into(),
            StatsError::Postgres(p) => p.into(),
            other => ApiError::internal(other),
        }
    }
}

fn stats_site(site: &Site) -> StatsSite {
    StatsSite { id: shared::SiteId::from_uuid(site.id), timezone: site.timezone.clone() }
}

/// A Stats API v2 query. `site_id` is the site's domain (as Plausible takes
/// it) or its id. See the README's "Stats API" for metrics, dimensions and
/// filters.
#[utoipa::path(post, path = "/api/v2/query", tag = "stats",
    request_body(content = Object, description = "Plausible Stats API v2 query: site_id, metrics, date_range, dimensions, filters, order_by, include, pagination"),
    responses((status = 200, body = Object, description = "{results: [{metrics, dimensions, comparison?}], meta, query}"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn query(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult<Response> {
    let request = QueryRequest::from_json(&body)?;
    let site = {
        let db = state.pool.get().await?;
        access::site(&db, &caller, &request.site_id, Permission::ViewStats).await?.site
    };
    Ok(cache::stats_query(&state.pool, &*state.cache, &stats_site(&site), request, now()).await?.into_response())
}

/// A funnel: how many visits go through ordered steps (page patterns, goals,
/// custom events), with conversion and drop-off per step, over raw events.
/// Same callers and `site_id` as the query. See the README's "Funnels".
#[utoipa::path(post, path = "/api/v2/funnel", tag = "stats",
    request_body(content = Object, description = "site_id, date_range (as the query's), filters (as the query's), steps: 2 to 8 of {page: pattern} | {goal: name} | {event: name}"),
    responses((status = 200, body = Object, description = "{steps: [{step, label, visitors, visits, conversion_rate, conversion_rate_step, dropoff, dropoff_rate}], conversion_rate, meta, query}"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn funnel(State(state): State<AppState>, caller: Caller, body: Bytes) -> ApiResult<Json<stats::FunnelResponse>> {
    let request = FunnelRequest::from_json(&body)?;
    let site = {
        let db = state.pool.get().await?;
        access::site(&db, &caller, &request.site_id, Permission::ViewStats).await?.site
    };
    Ok(Json(stats::funnel(&state.pool, &stats_site(&site), request, now()).await?))
}

impl IntoResponse for cache::StatsAnswer {
    fn into_response(self) -> Response {
        match self {
            cache::StatsAnswer::Fresh(answer) => Json(answer).into_response(),
            cache::StatsAnswer::Cached(json) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response(),
        }
    }
}

/// Visitors in the last 5 minutes, pageviews per minute, top pages now, the latest events.
#[utoipa::path(get, path = "/api/sites/{site_id}/realtime", tag = "stats",
    params(("site_id" = String, Path, description = "the site's id or domain")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn realtime(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<stats::Realtime>> {
    let site = {
        let db = state.pool.get().await?;
        access::site(&db, &caller, &site_ref, Permission::ViewStats).await?.site
    };
    Ok(Json(stats::realtime(&state.pool, &stats_site(&site), now()).await?))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PropertyKeys {
    /// Custom property names seen on the site's goal events in the last 90 days, most used first.
    pub keys: Vec<String>,
}

/// Which `event:props:<key>` breakdowns exist: the dashboard lists them.
#[utoipa::path(get, path = "/api/sites/{site_id}/property-keys", tag = "stats",
    params(("site_id" = String, Path, description = "the site's id or domain")),
    responses((status = 200, body = PropertyKeys), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn property_keys(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<PropertyKeys>> {
    let db = state.pool.get().await?;
    let site = access::site(&db, &caller, &site_ref, Permission::ViewStats).await?.site;
    let since = now() - chrono::Duration::days(90);
    // Rolled-up days name their keys in `prop:<key>` rows; today's are only in raw events.
    let rows = db
        .query(
            "SELECT key, sum(n)::bigint FROM (
                 SELECT substr(dimension, 6) AS key, sum(events) AS n FROM daily_rollups
                 WHERE site_id = $1 AND day >= $2::timestamptz::date AND dimension LIKE 'prop:%' GROUP BY 1
                 UNION ALL
                 SELECT k, count(*) FROM events, jsonb_object_keys(props) AS k
                 WHERE site_id = $1 AND ts >= date_trunc('day', now()) AND props <> '{}' GROUP BY 1
             ) x GROUP BY key ORDER BY 2 DESC, 1 LIMIT 100",
            &[&site.id, &since],
        )
        .await?;
    Ok(Json(PropertyKeys { keys: rows.iter().map(|r| r.get(0)).collect() }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ExportParams {
    /// A Stats API date range: `7d`, `30d`, `month`, `12mo`, … or `YYYY-MM-DD,YYYY-MM-DD`. Default `30d`.
    date_range: Option<String>,
    /// `direct` (default): the CSV itself; `link`: `{url, expires_at}`, a presigned link (needs a bucket).
    #[param(value_type = Option<Delivery>)]
    delivery: Option<Delivery>,
}

fn date_range_value(raw: Option<&str>) -> serde_json::Value {
    match raw.map(str::trim) {
        None | Some("") => serde_json::Value::from("30d"),
        Some(r) => match r.split_once(',') {
            Some((from, to)) => serde_json::json!([from.trim(), to.trim()]),
            None => serde_json::Value::from(r),
        },
    }
}

/// The site's stats as CSV (daily numbers, top pages, top sources) — the GDPR export of a site.
#[utoipa::path(get, path = "/api/sites/{site_id}/export.csv", tag = "stats",
    params(("site_id" = String, Path, description = "the site's id or domain"), ExportParams),
    responses((status = 200, content((String = "text/csv"), (ExportLink = "application/json"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn export_csv(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>, ApiQuery(params): ApiQuery<ExportParams>) -> ApiResult<Response> {
    let db = state.pool.get().await?;
    let site = access::site(&db, &caller, &site_ref, Permission::ViewStats).await?.site;
    let csv = stats::export_csv(&state.pool, &stats_site(&site), date_range_value(params.date_range.as_deref()), now()).await?;
    audit::record(&db, Some(site.organization_id), caller.user_id(), Action::StatsExported, Some(&site.domain), serde_json::json!({"date_range": params.date_range})).await?;
    if params.delivery.unwrap_or_default() == Delivery::Link {
        let name = format!("{}-stats.csv", site.domain);
        let link = blobs::export_link(&*state.blobs, &name, "text/csv; charset=utf-8", csv.into_bytes()).await?;
        return Ok(Json(link.ok_or_else(|| ApiError::bad_request(blobs::NO_LINKS))?).into_response());
    }
    let filename = format!("attachment; filename=\"{}-stats.csv\"", site.domain.replace(['"', '\\'], ""));
    let mut response = csv.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&filename) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn share_password(headers: &HeaderMap) -> Option<String> {
    headers.get("x-share-password").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The same query for a public share link (read-only; `site_id` in the body is ignored).
#[utoipa::path(post, path = "/api/shared/{slug}/query", tag = "stats", security(()),
    params(("slug" = String, Path), ("X-Share-Password" = Option<String>, Header, description = "for password-protected links")),
    request_body(content = Object, description = "as POST /api/v2/query; site_id may be omitted"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn shared_query(State(state): State<AppState>, ApiPath(slug): ApiPath<String>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let site = {
        let db = state.pool.get().await?;
        super::sites::resolve_share(&db, &slug, share_password(&headers).as_deref()).await?
    };
    // The link names the site; whatever the body says is replaced.
    let mut value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("site_id".into(), site.id.to_string().into());
    }
    let request = QueryRequest::from_json(value.to_string().as_bytes())?;
    Ok(cache::stats_query(&state.pool, &*state.cache, &stats_site(&site), request, now()).await?.into_response())
}

#[utoipa::path(get, path = "/api/shared/{slug}/realtime", tag = "stats", security(()),
    params(("slug" = String, Path), ("X-Share-Password" = Option<String>, Header)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn shared_realtime(State(state): State<AppState>, ApiPath(slug): ApiPath<String>, headers: HeaderMap) -> ApiResult<Json<stats::Realtime>> {
    let site = {
        let db = state.pool.get().await?;
        super::sites::resolve_share(&db, &slug, share_password(&headers).as_deref()).await?
    };
    Ok(Json(stats::realtime(&state.pool, &stats_site(&site), now()).await?))
}
