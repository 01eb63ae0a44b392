//! The dashboard API under `/api/`. Every route module returns an
//! [`OpenApiRouter`], so the OpenAPI document served at `/api/openapi.json`
//! is generated from the handlers themselves. Unknown paths answer a JSON 404.

pub mod access;
pub mod account;
pub mod auth;
pub mod billing;
pub mod imports;
pub mod mail;
pub mod notices;
pub mod oauth;
pub mod organizations;
pub mod sites;
pub mod stats;
pub mod stats_v1;
pub mod visitor_requests;

use std::sync::Arc;

use axum::routing::{any, get};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// Every error answer: `{"error": "reason"}`.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or etk_ API key").build()),
        );
    }
}

/// Answers every route may give without its handler saying so: 415 for a
/// body that is not JSON, 503 while the database is away.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder, Ref};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten() {
                if op.request_body.is_some() {
                    op.responses.responses.entry("415".into()).or_insert_with(|| error("the body must be JSON (`Content-Type: application/json`)"));
                }
                op.responses.responses.entry("503".into()).or_insert_with(|| error("the database is unavailable; retry"));
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "EngageTrack API", description = "Accounts, teams, sites, goals and the stats query engine (Plausible Stats API v2 shape)."),
    components(schemas(ErrorBody, crate::blobs::Delivery)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The routes and their generated OpenAPI document.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(oauth::router())
        .merge(account::router())
        .merge(organizations::router())
        .merge(sites::router())
        .merge(stats::router())
        .merge(stats_v1::router())
        .merge(billing::router())
        .merge(mail::router())
        .merge(notices::router())
        .merge(visitor_requests::router())
        .merge(imports::router())
        .split_for_parts();
    // After the merge: the paths exist only now.
    CommonResponses.modify(&mut doc);
    (routes, doc)
}

pub fn router() -> Router<AppState> {
    let (routes, doc) = documented();
    let doc = Arc::new(doc);
    routes
        .route("/api/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/api/{*rest}", any(no_such_route))
}

async fn no_such_route() -> ApiError {
    ApiError::not_found("no such API route")
}

/// `Json<T>` whose rejections (bad JSON, wrong content type, missing or
/// mistyped fields) answer in our `{"error"}` shape with the reason.
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match <Json<T> as axum::extract::FromRequest<S>>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = rejection.status();
                let status = if status == axum::http::StatusCode::UNPROCESSABLE_ENTITY { axum::http::StatusCode::BAD_REQUEST } else { status };
                Err(ApiError::new(status, rejection.body_text()))
            }
        }
    }
}

/// `Path<T>` whose rejections (an id that is not a UUID) answer 404 in our
/// shape: a malformed id names nothing that exists.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        <axum::extract::Path<T> as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|e| ApiError::not_found(format!("not found: {}", e.body_text())))
    }
}

/// `Query<T>` whose rejections (a mistyped parameter) answer 400 in our
/// `{"error"}` shape with the reason.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        <axum::extract::Query<T> as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// Current time; one place so handlers agree.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// What the host knows about the connection: the socket peer (the local
/// server) or API Gateway's request context (Lambda).
pub struct Peer(pub crate::client_ip::Transport);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(crate::client_ip::Transport::of(&parts.extensions)))
    }
}

/// The value of the request's cookie `name`, if it sent one.
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}
