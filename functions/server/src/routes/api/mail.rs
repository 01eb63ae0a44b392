//! Mail settings of the signed-in member for one site (reports, spike
//! alerts, their own timezone), and the one-click unsubscribe link mailed
//! with them, which works without a session (RFC 8058).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sites::Timezone;
use super::{ApiPath, ErrorBody, JsonBody, access};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::reports::token::{LinkKey, TokenError};
use crate::reports::{Choices, SpikeThreshold, render, store};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings)).routes(routes!(unsubscribe_page, unsubscribe))
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct MailSettings {
    /// The weekly report (the previous Monday to Sunday), mailed from 07:00 on your Monday.
    pub weekly: bool,
    /// The monthly report (the previous calendar month), mailed from 07:00 on the 1st.
    pub monthly: bool,
    /// Mail me when the site's current visitors (last 5 minutes) reach this; at most one alert an hour. Null: no alerts.
    #[schema(minimum = 1, maximum = 1000000)]
    pub spike_threshold: Option<i32>,
    /// Your own timezone (IANA) for all your reports; null: each site's timezone.
    pub timezone: Option<String>,
    /// The timezone your reports of this site are timed in.
    pub effective_timezone: String,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailSettingsInput {
    pub weekly: bool,
    pub monthly: bool,
    /// 1 to 1000000 current visitors; null or absent: no alerts.
    #[serde(default)]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 1000000)]
    pub spike_threshold: Option<i64>,
    /// An IANA timezone such as Europe/Paris, for all your reports; null or absent: each site's own.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Ignored: what GET answers may be sent back as it is.
    #[serde(default)]
    #[schema(read_only)]
    pub effective_timezone: Option<String>,
}

/// Only people have mail settings; an API key acts for an organisation.
fn signed_in(caller: &Caller) -> ApiResult<uuid::Uuid> {
    caller.user_id().ok_or_else(|| ApiError::forbidden("mail settings belong to a person: sign in as a user, not with an API key"))
}

async fn answer(db: &impl tokio_postgres::GenericClient, site: &crate::sites::Site, user: uuid::Uuid) -> ApiResult<MailSettings> {
    let (c, timezone) = store::choices(db, site.id, user).await?;
    Ok(MailSettings {
        weekly: c.weekly,
        monthly: c.monthly,
        spike_threshold: c.spike_threshold.map(SpikeThreshold::get),
        effective_timezone: timezone.clone().unwrap_or_else(|| site.timezone.clone()),
        timezone,
    })
}

/// Your mail settings for a site: reports, spike alerts, your timezone.
#[utoipa::path(get, path = "/api/sites/{site_id}/mail-settings", tag = "mail",
    params(("site_id" = String, Path, description = "the site's id or domain")),
    responses((status = 200, body = MailSettings), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_settings(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<MailSettings>> {
    let user = signed_in(&caller)?;
    let db = state.pool.get().await?;
    let site = access::site(&db, &caller, &site_ref, Permission::ViewStats).await?.site;
    Ok(Json(answer(&**db, &site, user).await?))
}

/// Replaces your mail settings for a site (any role that may read its stats
/// may subscribe); `timezone` is yours, for every site.
#[utoipa::path(put, path = "/api/sites/{site_id}/mail-settings", tag = "mail",
    params(("site_id" = String, Path, description = "the site's id or domain")),
    request_body = MailSettingsInput,
    responses((status = 200, body = MailSettings), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(req): JsonBody<MailSettingsInput>,
) -> ApiResult<Json<MailSettings>> {
    let user = signed_in(&caller)?;
    let spike_threshold = req.spike_threshold.map(SpikeThreshold::new).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let choices = Choices { weekly: req.weekly, monthly: req.monthly, spike_threshold };
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::ViewStats).await?.site;
    let timezone = match req.timezone.as_deref() {
        Some(tz) => Some(Timezone::lookup(&tx, tz).await?),
        None => None,
    };
    store::save_choices(&*tx, site.id, user, choices).await?;
    store::save_user_timezone(&*tx, user, timezone.as_ref().map(Timezone::as_str)).await?;
    let settings = answer(&*tx, &site, user).await?;
    tx.commit().await?;
    tracing::info!(site = %site.id, weekly = choices.weekly, monthly = choices.monthly, alerts = spike_threshold.is_some(), "mail settings saved");
    Ok(Json(settings))
}

#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameter; [`token_of`] reads it
pub struct TokenParam {
    /// The signed token from the mailed link.
    token: Option<String>,
}

/// The first `token` of the query string. Read by hand, so that no query
/// string (repeated or odd parameters) is refused as anything but a page.
fn token_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

/// The RFC 8058 body, `List-Unsubscribe=One-Click` (form-encoded).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form; the handler reads the pairs itself
pub struct OneClick {
    #[schema(rename = "List-Unsubscribe", example = "One-Click")]
    list_unsubscribe: String,
}

fn html(status: StatusCode, page: String) -> Response {
    let mut response = (status, page).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// A link refused, shown as a small page: people meet it from a mail, in a browser.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        html(self.0, render::notice_page("This link does not work", &self.1))
    }
}

fn refusal(status: StatusCode, reason: &str) -> Refusal {
    Refusal(status, reason.to_owned())
}

/// The subscription a link names, or the page that says why not.
fn verified(state: &AppState, token: Option<&str>) -> Result<crate::reports::token::Subscription, Refusal> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| refusal(StatusCode::BAD_REQUEST, "the link has no `token`"))?;
    let key =
        LinkKey::new(state.keys.current().mail_link.as_deref()).map_err(|e| refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    key.verify(token).map_err(|e| {
        let status = if e == TokenError::Forged { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        refusal(status, &e.to_string())
    })
}

/// The page an unsubscribe link opens: what it stops, and a button (a mail
/// client's link checker following the GET must not unsubscribe anyone).
#[utoipa::path(get, path = "/api/unsubscribe", tag = "mail", security(()), params(TokenParam),
    responses((status = 200, content_type = "text/html", body = String, description = "the confirmation page"),
              (status = 400, content_type = "text/html", body = String, description = "no token, or a malformed one"),
              (status = 403, content_type = "text/html", body = String, description = "a token this server did not sign"),
              (status = 503, content_type = "text/html", body = String, description = "no `mail-link-key` in the secret store")))]
async fn unsubscribe_page(State(state): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let token = token_of(query.as_deref());
    let subscription = match verified(&state, token.as_deref()) {
        Ok(s) => s,
        Err(refused) => return Ok(refused.into_response()),
    };
    let domain = store::site_domain(&**state.pool.get().await?, subscription.site_id).await?;
    // A verified token is base64url: it needs no escaping in the URL.
    let action = format!("/api/unsubscribe?token={}", token.unwrap_or_default().trim());
    Ok(html(StatusCode::OK, render::confirm_page(subscription.kind, domain.as_deref(), &action)))
}

/// One-click unsubscribe (RFC 8058): stops what the token names at once;
/// again changes nothing. No session needed: the signed token is the proof.
#[utoipa::path(post, path = "/api/unsubscribe", tag = "mail", security(()), params(TokenParam),
    request_body(content = OneClick, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, content_type = "text/html", body = String, description = "unsubscribed (or already)"),
              (status = 400, content_type = "text/html", body = String, description = "no or a malformed token, or a body without `List-Unsubscribe=One-Click`"),
              (status = 403, content_type = "text/html", body = String, description = "a token this server did not sign"),
              (status = 503, content_type = "text/html", body = String, description = "no `mail-link-key` in the secret store")))]
async fn unsubscribe(State(state): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> ApiResult<Response> {
    let subscription = match verified(&state, token_of(query.as_deref()).as_deref()) {
        Ok(s) => s,
        Err(refused) => return Ok(refused.into_response()),
    };
    let one_click = url::form_urlencoded::parse(&body).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    if !one_click {
        return Ok(
            refusal(StatusCode::BAD_REQUEST, "the body must be `List-Unsubscribe=One-Click` (form-encoded, RFC 8058)").into_response()
        );
    }
    let db = state.pool.get().await?;
    let stopped = store::unsubscribe(&**db, &subscription).await?;
    let domain = store::site_domain(&**db, subscription.site_id).await?;
    tracing::info!(site = %subscription.site_id, kind = subscription.kind.describe(), stopped, "unsubscribed by link");
    Ok(html(StatusCode::OK, render::done_page(subscription.kind, domain.as_deref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_of_the_query() {
        assert_eq!(token_of(Some("token=abc&token=def")).as_deref(), Some("abc"));
        assert_eq!(token_of(Some("x=1&token=a%2Db")).as_deref(), Some("a-b"));
        assert_eq!(token_of(Some("tok")), None);
        assert_eq!(token_of(None), None);
    }

    #[test]
    fn the_document_says_what_each_answer_is() {
        let (_, doc) = super::super::documented();
        let doc = serde_json::to_value(&doc).expect("the document as JSON");
        let paths = &doc["paths"];
        for method in ["get", "post"] {
            let op = &paths["/api/unsubscribe"][method];
            assert_eq!(op["security"], serde_json::json!([{}]), "public: {op}");
            for status in ["200", "400", "403"] {
                assert!(op["responses"][status]["content"]["text/html"].is_object(), "{method} {status}: {op}");
            }
        }
        let form = &paths["/api/unsubscribe"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"];
        assert!(form["schema"].is_object(), "{form}");
        let put = &paths["/api/sites/{site_id}/mail-settings"]["put"];
        assert!(put["requestBody"]["content"]["application/json"].is_object(), "{put}");
        let schema = &doc["components"]["schemas"]["MailSettingsInput"];
        assert_eq!(schema["required"], serde_json::json!(["weekly", "monthly"]), "{schema}");
        assert_eq!(schema["properties"]["spike_threshold"]["minimum"], 1, "{schema}");
    }
}
