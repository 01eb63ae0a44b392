//! Visitor requests (`/api/sites/{site_id}/visitor-requests/…`): find,
//! export and erase one visitor's events, for owners and admins only (people,
//! not API keys: the answers are personal data). The rules and the SQL are
//! in [`crate::visitor_requests`]; this checks the role, parses the key and
//! maps errors.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ErrorBody, JsonBody, access};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::visitor_requests::{
    Erased, Exported, Found, Requester, VisitorKey, VisitorRequest, VisitorRequestBody, VisitorRequestError, store,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(find)).routes(routes!(export)).routes(routes!(erase))
}

impl From<VisitorRequestError> for ApiError {
    fn from(e: VisitorRequestError) -> Self {
        match e {
            VisitorRequestError::Key(_) | VisitorRequestError::NoLookupKey => {
                ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            VisitorRequestError::Pool(p) => p.into(),
            VisitorRequestError::Postgres(p) => p.into(),
        }
    }
}

/// The role first, then the key: a caller without the role learns nothing
/// from the body's checks.
async fn admit(state: &AppState, caller: &Caller, site_ref: &str, body: VisitorRequestBody) -> ApiResult<VisitorRequest> {
    let db = state.pool.get().await?;
    let site = access::site(&db, caller, site_ref, Permission::AnswerVisitorRequests).await?.site;
    // access::site refuses API keys for this permission; a user remains.
    let Caller::User(user) = caller else { return Err(ApiError::forbidden("API keys cannot use this endpoint; sign in as a user")) };
    let key = VisitorKey::parse(body).map_err(VisitorRequestError::from)?;
    Ok(VisitorRequest {
        by: Requester { organization: site.organization_id, user: user.user_id },
        site: shared::SiteId::from_uuid(site.id),
        domain: site.domain,
        key,
    })
}

/// How many events, sessions and days a visitor has on the site (audited).
#[utoipa::path(post, path = "/api/sites/{site_id}/visitor-requests/find", tag = "visitor requests",
    params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body(content = VisitorRequestBody, description = "Exactly one of `user_id`, `email`, `visitor_id`"),
    responses((status = 200, body = Found), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "no key, several keys, a malformed key, or an IP address (memory mode identifies no one)")))]
async fn find(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(body): JsonBody<VisitorRequestBody>,
) -> ApiResult<Json<Found>> {
    let r = admit(&state, &caller, &site_ref, body).await?;
    let found = store::find(&state.pool, &state.visitor_lookup, &r).await?;
    tracing::info!(site = %r.site, key_kind = r.key.kind().as_str(), events = found.events, "visitor request: find");
    Ok(Json(found))
}

/// The visitor's events as JSON, encrypted fields decrypted (audited).
#[utoipa::path(post, path = "/api/sites/{site_id}/visitor-requests/export", tag = "visitor requests",
    params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body(content = VisitorRequestBody, description = "Exactly one of `user_id`, `email`, `visitor_id`"),
    responses((status = 200, body = Exported), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "no key, several keys, a malformed key, or an IP address (memory mode identifies no one)")))]
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(body): JsonBody<VisitorRequestBody>,
) -> ApiResult<Json<Exported>> {
    let r = admit(&state, &caller, &site_ref, body).await?;
    let exported = store::export(&state.pool, &state.visitor_lookup, &state.cipher, &r).await?;
    tracing::info!(site = %r.site, key_kind = r.key.kind().as_str(), events = exported.count, "visitor request: export");
    Ok(Json(exported))
}

/// Deletes the visitor's events and rebuilds the rollups of their days
/// without them; answers what was erased (audited).
#[utoipa::path(post, path = "/api/sites/{site_id}/visitor-requests/erase", tag = "visitor requests",
    params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body(content = VisitorRequestBody, description = "Exactly one of `user_id`, `email`, `visitor_id`"),
    responses((status = 200, body = Erased), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody, description = "no key, several keys, a malformed key, or an IP address (memory mode identifies no one)")))]
async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(body): JsonBody<VisitorRequestBody>,
) -> ApiResult<Json<Erased>> {
    let r = admit(&state, &caller, &site_ref, body).await?;
    let erased = store::erase(&state.pool, &state.visitor_lookup, &r).await?;
    tracing::info!(site = %r.site, key_kind = r.key.kind().as_str(), events = erased.found.events, days = erased.rerolled_days.len(),
        pending = erased.pending_days.len(), "visitor request: erase");
    Ok(Json(erased))
}

#[cfg(test)]
mod tests {
    /// The document schemathesis reads: each operation's body and answers.
    #[test]
    fn the_openapi_document_describes_the_three_operations() {
        let (_, doc) = super::super::documented();
        let doc = serde_json::to_value(&doc).unwrap();
        for (action, schema) in [("find", "Found"), ("export", "Exported"), ("erase", "Erased")] {
            let op = &doc["paths"][format!("/api/sites/{{site_id}}/visitor-requests/{action}")]["post"];
            assert_eq!(
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/VisitorRequestBody",
                "{action}"
            );
            let ok = &op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(ok, &format!("#/components/schemas/{schema}"), "{action}");
            for status in ["400", "401", "403", "404", "415", "422", "503"] {
                assert!(op["responses"].get(status).is_some(), "{action} documents {status}");
            }
        }
        let schemas = &doc["components"]["schemas"];
        for name in ["VisitorRequestBody", "Found", "Exported", "Erased", "KeyKind"] {
            assert!(schemas.get(name).is_some(), "schema {name}: {}", schemas);
        }
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&[&schemas["Found"], &schemas["Erased"], &schemas["Exported"], &schemas["VisitorRequestBody"]])
                .unwrap()
        );
    }
}
