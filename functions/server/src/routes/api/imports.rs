//! Imports (`/api/sites/{site_id}/imports…`): upload a Plausible, GA4 or
//! Umami export (the body is the file), or have Umami's database read; list,
//! poll and delete imports. Owners and admins only, as other site settings
//! that change data. The rules and the SQL are in [`crate::imports`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{ApiPath, ErrorBody, access};
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::imports::store::{self, Import, NewImport};
use crate::imports::{ImportError, MAX_UPLOAD_BYTES, SourceKind};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, list))
        .routes(routes!(show, remove))
        // A whole export is the body; the parsers check it further (zip entries, sizes).
        .layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD_BYTES))
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::NotFound => ApiError::not_found("import not found"),
            ImportError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            ImportError::Pool(p) => p.into(),
            ImportError::Postgres(p) => p.into(),
            other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, other.to_string()),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// plausible | ga4 | ga4-bigquery | umami | umami-db
    pub source: String,
    /// First day to keep (YYYY-MM-DD); default: the file's own range.
    pub from: Option<NaiveDate>,
    /// Last day to keep (YYYY-MM-DD).
    pub to: Option<NaiveDate>,
    /// The uploaded file's name (Plausible's CSV names carry the table and range).
    pub file_name: Option<String>,
}

/// The body of an `umami-db` import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UmamiDatabase {
    /// `postgres://user:password@host/db`; read in a read-only transaction, never stored.
    pub database_url: String,
    /// Umami's website id.
    pub website_id: Uuid,
}

async fn admit(state: &AppState, caller: &Caller, site_ref: &str) -> ApiResult<(Uuid, Option<Uuid>)> {
    let db = state.pool.get().await?;
    let site = access::site(&db, caller, site_ref, Permission::ImportData).await?.site;
    let user = match caller {
        Caller::User(u) => Some(u.user_id),
        Caller::ApiKey(_) => None,
    };
    Ok((site.id, user))
}

fn range(params: &UploadParams) -> ApiResult<Option<(NaiveDate, NaiveDate)>> {
    match (params.from, params.to) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(ApiError::bad_request("give both `from` and `to`, or neither")),
    }
}

/// The host of a database URL, without its user and password.
fn database_origin(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map_or_else(|| "umami database".to_owned(), |u| format!("umami database at {}", u.host_str().unwrap_or("localhost")))
}

/// Imports a file (the body) or, for `umami-db`, reads Umami's database
/// (the body is JSON). Answers when the data is in; a refused file answers
/// 422 with the file, line and column, and leaves no rows.
#[utoipa::path(post, path = "/api/sites/{site_id}/imports", tag = "imports",
    params(("site_id" = String, Path, description = "The site's id or domain"), UploadParams),
    request_body(content = Vec<u8>, description = "The export file as it came from the tool; for umami-db, an UmamiDatabase JSON body",
                 content_type = "application/octet-stream"),
    responses((status = 201, body = Import), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody, description = "the file is too large"),
              (status = 422, body = ErrorBody, description = "the file is refused: the reason names the file, line and column")))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Import>)> {
    let (site_id, user) = admit(&state, &caller, &site_ref).await?;
    // The role first, then the parameters: a caller without the role learns nothing from their checks.
    let axum::extract::Query(params) =
        axum::extract::Query::<UploadParams>::try_from_uri(&uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    let source = SourceKind::parse(&params.source)?;
    let range = range(&params)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the body is empty: send the export file as the body"));
    }
    let new = |origin: String| NewImport { site_id, source, origin, started_by: user, bytes_total: body.len() as i64 };
    let import = match source {
        SourceKind::UmamiDb => {
            let target: UmamiDatabase = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("umami-db takes a JSON body {{database_url, website_id}}: {e}")))?;
            let Some((from, to)) = range else { return Err(ApiError::bad_request("umami-db needs `from` and `to`")) };
            let read = crate::imports::umami::read_database(&target.database_url, target.website_id, from, to);
            crate::imports::run(&state.pool, new(database_origin(&target.database_url)), range, read).await?
        }
        _ => {
            let file_name = params.file_name.clone().unwrap_or_else(|| format!("{}-upload", source.as_str()));
            crate::imports::run_file(&state.pool, new(file_name.clone()), range, file_name, body.to_vec()).await?
        }
    };
    Ok((StatusCode::CREATED, Json(import)))
}

/// The site's imports, newest first.
#[utoipa::path(get, path = "/api/sites/{site_id}/imports", tag = "imports",
    params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 200, body = Vec<Import>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<Vec<Import>>> {
    let (site_id, _) = admit(&state, &caller, &site_ref).await?;
    Ok(Json(store::list(&state.pool, site_id).await?))
}

/// One import: status, progress (rows and bytes done of total), error.
#[utoipa::path(get, path = "/api/sites/{site_id}/imports/{import_id}", tag = "imports",
    params(("site_id" = String, Path, description = "The site's id or domain"), ("import_id" = Uuid, Path)),
    responses((status = 200, body = Import), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show(State(state): State<AppState>, caller: Caller, ApiPath((site_ref, id)): ApiPath<(String, Uuid)>) -> ApiResult<Json<Import>> {
    let (site_id, _) = admit(&state, &caller, &site_ref).await?;
    Ok(Json(store::get(&state.pool, site_id, id).await?))
}

/// Deletes an import and every row it brought.
#[utoipa::path(delete, path = "/api/sites/{site_id}/imports/{import_id}", tag = "imports",
    params(("site_id" = String, Path, description = "The site's id or domain"), ("import_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove(State(state): State<AppState>, caller: Caller, ApiPath((site_ref, id)): ApiPath<(String, Uuid)>) -> ApiResult<StatusCode> {
    let (site_id, _) = admit(&state, &caller, &site_ref).await?;
    store::delete(&state.pool, site_id, id).await?;
    tracing::info!(site = %site_id, import = %id, "import deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    /// The document schemathesis reads: the four operations and their answers.
    #[test]
    fn the_openapi_document_describes_the_imports_operations() {
        let (_, doc) = super::super::documented();
        let doc = serde_json::to_value(&doc).unwrap();
        let list = &doc["paths"]["/api/sites/{site_id}/imports"];
        let one = &doc["paths"]["/api/sites/{site_id}/imports/{import_id}"];
        assert_eq!(list["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Import");
        assert!(list["post"]["requestBody"]["content"].get("application/octet-stream").is_some(), "{}", list["post"]["requestBody"]);
        for status in ["400", "401", "403", "404", "413", "422", "503"] {
            assert!(list["post"]["responses"].get(status).is_some(), "upload documents {status}");
        }
        assert!(list["get"].is_object() && one["get"].is_object() && one["delete"]["responses"].get("204").is_some());
        let params: Vec<&str> = list["post"]["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
        for name in ["site_id", "source", "from", "to", "file_name"] {
            assert!(params.contains(&name), "{params:?}");
        }
    }
}
