//! Sites and what hangs off them: settings (domain, timezone, allowed
//! hostnames, excluded paths, retention), goals, public share links and the
//! installation check. Every handler asks [`access::site`] or
//! [`access::organization`] first; a site of another tenant reads as 404.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::organizations::is_unique_violation;
use super::{ApiPath, ApiQuery, ErrorBody, JsonBody, access, now};
use crate::accounts;
use crate::auth::rate_limit;
use crate::audit::{self, Action};
use crate::edge_publish;
use crate::auth::opaque::OpaqueToken;
use crate::auth::{Caller, Permission};
use crate::error::{ApiError, ApiResult};
use crate::sites::Site;
use crate::state::AppState;

pub const MAX_RETENTION_DAYS: i32 = 3650;
const MAX_LIST_ENTRIES: usize = 100;
const SHARE_PASSWORD_HEADER: &str = "x-share-password";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites))
        .routes(routes!(create_site))
        .routes(routes!(get_site, update_site, delete_site))
        .routes(routes!(installation))
        .routes(routes!(list_goals, create_goal))
        .routes(routes!(delete_goal))
        .routes(routes!(list_share_links, create_share_link))
        .routes(routes!(delete_share_link))
        .routes(routes!(shared_site))
}

/// Bad input for a site, goal or share link, with the reason the client sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SiteInputError {
    #[error("`{field}` `{value}` is not a domain name (like example.com; no IP addresses)")]
    BadDomain { field: &'static str, value: String },
    #[error("`timezone` `{0}` is not a time zone PostgreSQL knows (use an IANA name such as Europe/Paris)")]
    UnknownTimezone(String),
    #[error("`retention_days` must be between 1 and {MAX_RETENTION_DAYS}")]
    BadRetention,
    #[error("`{field}` pattern `{value}` must start with `/`, be at most 500 characters and hold no spaces or control characters")]
    BadPath { field: &'static str, value: String },
    #[error("`{0}` may hold at most {MAX_LIST_ENTRIES} entries")]
    TooMany(&'static str),
    #[error("`{0}` must be 1 to 120 characters, without control characters")]
    BadText(&'static str),
    #[error("`currency` `{0}` is not an ISO 4217 currency code")]
    BadCurrency(String),
    #[error("{0}")]
    BadGoal(String),
    #[error("a share link password must be 8 to 72 bytes")]
    BadSharePassword,
}

impl From<SiteInputError> for ApiError {
    fn from(e: SiteInputError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// A site's domain, normalised: lower-case host (IDNA as punycode), no
/// scheme, user, port, path or trailing dot; 2+ valid DNS labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Self, SiteInputError> {
        Self::parse_field("domain", raw)
    }

    fn parse_field(field: &'static str, raw: &str) -> Result<Self, SiteInputError> {
        let bad = || SiteInputError::BadDomain { field, value: raw.chars().take(100).collect() };
        let s = raw.trim();
        if s.is_empty() || s.len() > 2048 {
            return Err(bad());
        }
        // People paste URLs; the URL parser does the lower-casing and IDNA.
        let url = if s.contains("://") { url::Url::parse(s) } else { url::Url::parse(&format!("http://{s}")) }.map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
            return Err(bad());
        }
        let Some(url::Host::Domain(host)) = url.host() else {
            return Err(bad());
        };
        let host = host.trim_end_matches('.');
        let labels: Vec<&str> = host.split('.').collect();
        let label_ok = |l: &&str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let tld_ok = labels.last().is_some_and(|t| !t.bytes().all(|b| b.is_ascii_digit()));
        if host.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok {
            return Err(bad());
        }
        Ok(Self(host.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An allowed hostname: a domain, or `*.domain` for any of its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostnamePattern(String);

impl HostnamePattern {
    pub fn parse(raw: &str) -> Result<Self, SiteInputError> {
        let s = raw.trim();
        match s.strip_prefix("*.") {
            Some(rest) => Ok(Self(format!("*.{}", Domain::parse_field("allowed_hostnames", rest)?.0))),
            None => Ok(Self(Domain::parse_field("allowed_hostnames", s)?.0)),
        }
    }
}

/// A path pattern (`*` matches anything): `/blog/*`, `/admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(String);

impl PathPattern {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, SiteInputError> {
        let s = raw.trim();
        if s.starts_with('/') && s.chars().count() <= 500 && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(SiteInputError::BadPath { field, value: s.chars().take(100).collect() })
        }
    }
}

/// An IANA time zone PostgreSQL knows, in PostgreSQL's spelling: the stats
/// engine hands it to `AT TIME ZONE`, so the database is the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timezone(String);

impl Timezone {
    pub async fn lookup(db: &impl GenericClient, raw: &str) -> ApiResult<Self> {
        let s = raw.trim();
        let unknown = || ApiError::from(SiteInputError::UnknownTimezone(s.chars().take(64).collect()));
        if s.is_empty() || s.len() > 64 {
            return Err(unknown());
        }
        let row = db
            .query_opt("SELECT name FROM pg_timezone_names WHERE lower(name) = lower($1) ORDER BY name = $1 DESC, name LIMIT 1", &[&s])
            .await?
            .ok_or_else(unknown)?;
        Ok(Self(row.get(0)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn retention(days: i32) -> Result<i32, SiteInputError> {
    if (1..=MAX_RETENTION_DAYS).contains(&days) { Ok(days) } else { Err(SiteInputError::BadRetention) }
}

/// Trimmed, 1–120 characters, no control characters.
pub(crate) fn short_text(field: &'static str, raw: &str) -> Result<String, SiteInputError> {
    let s = raw.trim();
    if (1..=120).contains(&s.chars().count()) && !s.chars().any(char::is_control) { Ok(s.to_owned()) } else { Err(SiteInputError::BadText(field)) }
}

fn hostnames(raw: &[String]) -> Result<Vec<String>, SiteInputError> {
    if raw.len() > MAX_LIST_ENTRIES {
        return Err(SiteInputError::TooMany("allowed_hostnames"));
    }
    let mut out: Vec<String> = raw.iter().map(|h| HostnamePattern::parse(h).map(|p| p.0)).collect::<Result<_, _>>()?;
    out.dedup();
    Ok(out)
}

fn excluded_paths(raw: &[String]) -> Result<Vec<String>, SiteInputError> {
    if raw.len() > MAX_LIST_ENTRIES {
        return Err(SiteInputError::TooMany("excluded_paths"));
    }
    raw.iter().map(|p| PathPattern::parse("excluded_paths", p).map(|p| p.0)).collect()
}

/// Who acted, for the audit log: API keys have no user, so their id goes in the details.
fn actor(caller: &Caller) -> (Option<Uuid>, serde_json::Value) {
    match caller {
        Caller::User(u) => (Some(u.user_id), serde_json::json!({})),
        Caller::ApiKey(k) => (None, serde_json::json!({"api_key": k.key_id})),
    }
}

fn with(mut details: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(d), Some(e)) = (details.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    details
}

async fn load_site(db: &impl GenericClient, id: Uuid) -> ApiResult<Site> {
    let row = db
        .query_opt(&format!("SELECT {} FROM sites s WHERE s.id = $1", Site::COLUMNS), &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("site not found"))?;
    Ok(Site::from_row(&row))
}

// ---------------------------------------------------------------- sites

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SiteWithRole {
    #[serde(flatten)]
    pub site: Site,
    /// The caller's role in the site's organisation; null for API keys.
    pub role: Option<String>,
}

/// Every site the caller can see: a person's sites across their
/// organisations, an API key's (scope `sites:read`) in its organisation.
#[utoipa::path(get, path = "/api/sites", tag = "sites",
    responses((status = 200, body = Vec<SiteWithRole>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_sites(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<SiteWithRole>>> {
    let db = state.pool.get().await?;
    let rows = match &caller {
        Caller::User(user) => {
            db.query(
                &format!(
                    "SELECT {}, m.role FROM sites s
                     JOIN organizations o ON o.id = s.organization_id AND o.deleted_at IS NULL
                     JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = $1
                     WHERE s.deleted_at IS NULL ORDER BY s.created_at, s.id",
                    Site::COLUMNS
                ),
                &[&user.user_id],
            )
            .await?
        }
        Caller::ApiKey(key) => {
            access::organization(&db, &caller, key.organization_id, Permission::ViewOrganization).await?;
            db.query(
                &format!(
                    "SELECT {}, NULL::text AS role FROM sites s
                     JOIN organizations o ON o.id = s.organization_id AND o.deleted_at IS NULL
                     WHERE s.organization_id = $1 AND s.deleted_at IS NULL ORDER BY s.created_at, s.id",
                    Site::COLUMNS
                ),
                &[&key.organization_id],
            )
            .await?
        }
    };
    Ok(Json(rows.iter().map(|r| SiteWithRole { site: Site::from_row(r), role: r.get("role") }).collect()))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    /// `example.com`; a pasted URL is reduced to its host.
    pub domain: String,
    /// Defaults to the domain.
    pub name: Option<String>,
    /// IANA name; UTC by default.
    pub timezone: Option<String>,
    /// 1 to 3650; 730 by default.
    pub retention_days: Option<i32>,
    /// Hostnames whose beacons count (`*.example.com` for subdomains); empty: the domain and its subdomains.
    pub allowed_hostnames: Option<Vec<String>>,
    /// Path patterns (`*` wildcard) whose pageviews are not counted.
    pub excluded_paths: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/organizations/{org_id}/sites", tag = "sites", params(("org_id" = Uuid, Path)),
    request_body = CreateSite,
    responses((status = 201, body = Site), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 402, body = ErrorBody, description = "the plan's site limit is reached"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_site(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<CreateSite>,
) -> ApiResult<(StatusCode, Json<Site>)> {
    let domain = Domain::parse(&req.domain)?;
    let name = req.name.as_deref().map(|n| short_text("name", n)).transpose()?.unwrap_or_else(|| domain.as_str().to_owned());
    let retention_days = req.retention_days.map(retention).transpose()?.unwrap_or(730);
    let allowed = hostnames(req.allowed_hostnames.as_deref().unwrap_or_default())?;
    let excluded = excluded_paths(req.excluded_paths.as_deref().unwrap_or_default())?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    access::organization(&tx, &caller, org, Permission::EditSites).await?;
    crate::billing::limits::check_new_site(&tx, org).await?;
    let timezone = match req.timezone.as_deref() {
        Some(tz) => Timezone::lookup(&tx, tz).await?,
        None => Timezone("UTC".into()),
    };
    let id = Uuid::new_v4();
    let inserted = tx
        .execute(
            "INSERT INTO sites (id, organization_id, domain, name, timezone, retention_days, allowed_hostnames, excluded_paths)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&id, &org, &domain.as_str(), &name, &timezone.0, &retention_days, &allowed, &excluded],
        )
        .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => return Err(ApiError::conflict(format!("this organization already has a site for {}", domain.as_str()))),
        other => other?,
    };
    let (who, details) = actor(&caller);
    audit::record(&tx, Some(org), who, Action::SiteCreated, Some(domain.as_str()), with(details, serde_json::json!({"site": id}))).await?;
    let site = load_site(&tx, id).await?;
    tx.commit().await?;
    // After the commit: the edge must not learn of a site that was rolled back.
    edge_publish::site_changed(&*state.edge, shared::SiteId::from_uuid(site.id), Some(site.active)).await;
    Ok((StatusCode::CREATED, Json(site)))
}

#[utoipa::path(get, path = "/api/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 200, body = Site), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_site(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<Site>> {
    let db = state.pool.get().await?;
    Ok(Json(access::site(&db, &caller, &site_ref, Permission::ViewOrganization).await?.site))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    pub domain: Option<String>,
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub retention_days: Option<i32>,
    /// Replaces the list whole.
    pub allowed_hostnames: Option<Vec<String>>,
    /// Replaces the list whole.
    pub excluded_paths: Option<Vec<String>>,
    /// false pauses collection: beacons are refused.
    pub active: Option<bool>,
}

/// Change settings. The ingest picks changes up within 30 seconds (its site cache).
#[utoipa::path(patch, path = "/api/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body = UpdateSite,
    responses((status = 200, body = Site), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_site(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(req): JsonBody<UpdateSite>,
) -> ApiResult<Json<Site>> {
    // Parse everything first: one bad field changes nothing.
    let domain = req.domain.as_deref().map(Domain::parse).transpose()?;
    let name = req.name.as_deref().map(|n| short_text("name", n)).transpose()?;
    let retention_days = req.retention_days.map(retention).transpose()?;
    let allowed = req.allowed_hostnames.as_deref().map(hostnames).transpose()?;
    let excluded = req.excluded_paths.as_deref().map(excluded_paths).transpose()?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::EditSites).await?.site;
    crate::sites::lock_organization_of_site(&tx, site.organization_id).await?;
    let timezone = match req.timezone.as_deref() {
        Some(tz) => Some(Timezone::lookup(&tx, tz).await?),
        None => None,
    };
    let mut fields = Vec::new();
    if let Some(domain) = &domain {
        let changed = tx.execute("UPDATE sites SET domain = $2 WHERE id = $1", &[&site.id, &domain.as_str()]).await;
        match changed {
            Err(e) if is_unique_violation(&e) => return Err(ApiError::conflict(format!("this organization already has a site for {}", domain.as_str()))),
            other => other?,
        };
        fields.push("domain");
    }
    if let Some(name) = &name {
        tx.execute("UPDATE sites SET name = $2 WHERE id = $1", &[&site.id, name]).await?;
        fields.push("name");
    }
    if let Some(tz) = &timezone {
        tx.execute("UPDATE sites SET timezone = $2 WHERE id = $1", &[&site.id, &tz.0]).await?;
        fields.push("timezone");
    }
    if let Some(days) = retention_days {
        tx.execute("UPDATE sites SET retention_days = $2 WHERE id = $1", &[&site.id, &days]).await?;
        fields.push("retention_days");
    }
    if let Some(list) = &allowed {
        tx.execute("UPDATE sites SET allowed_hostnames = $2 WHERE id = $1", &[&site.id, list]).await?;
        fields.push("allowed_hostnames");
    }
    if let Some(list) = &excluded {
        tx.execute("UPDATE sites SET excluded_paths = $2 WHERE id = $1", &[&site.id, list]).await?;
        fields.push("excluded_paths");
    }
    if let Some(active) = req.active {
        tx.execute("UPDATE sites SET active = $2 WHERE id = $1", &[&site.id, &active]).await?;
        fields.push("active");
    }
    if !fields.is_empty() {
        let (who, details) = actor(&caller);
        audit::record(&tx, Some(site.organization_id), who, Action::SiteChanged, Some(&site.domain), with(details, serde_json::json!({"site": site.id, "fields": fields})))
            .await?;
    }
    let site = load_site(&tx, site.id).await?;
    tx.commit().await?;
    if req.active.is_some() {
        edge_publish::site_changed(&*state.edge, shared::SiteId::from_uuid(site.id), Some(site.active)).await;
    }
    Ok(Json(site))
}

/// Soft delete: the site disappears and stops accepting events; the
/// retention job erases its data later.
#[utoipa::path(delete, path = "/api/sites/{site_id}", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_site(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<StatusCode> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::DeleteSites).await?.site;
    crate::sites::lock_organization_of_site(&tx, site.organization_id).await?;
    tx.execute("UPDATE sites SET deleted_at = $2, active = false WHERE id = $1", &[&site.id, &now()]).await?;
    let (who, details) = actor(&caller);
    audit::record(&tx, Some(site.organization_id), who, Action::SiteDeleted, Some(&site.domain), with(details, serde_json::json!({"site": site.id}))).await?;
    tx.commit().await?;
    edge_publish::site_changed(&*state.edge, shared::SiteId::from_uuid(site.id), None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Installation {
    /// Has any event of this site been stored?
    pub seen: bool,
    pub last_event_at: Option<DateTime<Utc>>,
    pub events_last_24h: i64,
}

/// "Have we seen a beacon?" — for the setup screen.
#[utoipa::path(get, path = "/api/sites/{site_id}/installation", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 200, body = Installation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn installation(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<Installation>> {
    let db = state.pool.get().await?;
    let site = access::site(&db, &caller, &site_ref, Permission::ViewOrganization).await?.site;
    // The primary key (site_id, ts, id) serves both: newest first, and a bounded range.
    let last: Option<DateTime<Utc>> = db
        .query_opt("SELECT ts FROM events WHERE site_id = $1 ORDER BY ts DESC LIMIT 1", &[&site.id])
        .await?
        .map(|r| r.get(0));
    let recent: i64 = db
        .query_one("SELECT count(*) FROM events WHERE site_id = $1 AND ts > $2", &[&site.id, &(now() - chrono::Duration::hours(24))])
        .await?
        .get(0);
    Ok(Json(Installation { seen: last.is_some(), last_event_at: last, events_last_24h: recent }))
}

// ---------------------------------------------------------------- goals

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct GoalView {
    pub id: Uuid,
    /// pageview, event or revenue.
    pub kind: String,
    pub display_name: String,
    pub page_path: Option<String>,
    pub event_name: Option<String>,
    pub currency: Option<String>,
    pub created_at: DateTime<Utc>,
}

const GOAL_COLUMNS: &str = "id, kind, display_name, page_path, event_name, currency, created_at";

fn goal_view(r: &tokio_postgres::Row) -> GoalView {
    GoalView { id: r.get(0), kind: r.get(1), display_name: r.get(2), page_path: r.get(3), event_name: r.get(4), currency: r.get(5), created_at: r.get(6) }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGoal {
    /// pageview (with `page_path`), event (with `event_name`) or revenue (with `event_name` and `currency`).
    pub kind: String,
    pub page_path: Option<String>,
    pub event_name: Option<String>,
    /// ISO 4217 code, for revenue goals.
    pub currency: Option<String>,
    /// Defaults to "Visit /path" or the event name.
    pub display_name: Option<String>,
}

/// A goal as the database stores it; each kind carries exactly its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalSpec {
    Pageview { path: PathPattern },
    Event { name: String },
    Revenue { name: String, currency: iso_currency::Currency },
}

impl GoalSpec {
    pub fn parse(req: &CreateGoal) -> Result<Self, SiteInputError> {
        let stray = |field: &str, kind: &str| SiteInputError::BadGoal(format!("`{field}` does not apply to {kind} goals"));
        let need = |field: &str, kind: &str| SiteInputError::BadGoal(format!("{kind} goals need `{field}`"));
        match req.kind.as_str() {
            "pageview" => {
                if req.event_name.is_some() {
                    return Err(stray("event_name", "pageview"));
                }
                if req.currency.is_some() {
                    return Err(stray("currency", "pageview"));
                }
                let path = req.page_path.as_deref().ok_or_else(|| need("page_path", "pageview"))?;
                Ok(Self::Pageview { path: PathPattern::parse("page_path", path)? })
            }
            "event" | "revenue" => {
                let kind = req.kind.as_str();
                if req.page_path.is_some() {
                    return Err(stray("page_path", kind));
                }
                let name = short_text("event_name", req.event_name.as_deref().ok_or_else(|| need("event_name", kind))?)?;
                match (kind, req.currency.as_deref()) {
                    ("event", None) => Ok(Self::Event { name }),
                    ("event", Some(_)) => Err(stray("currency", "event")),
                    (_, None) => Err(need("currency", "revenue")),
                    (_, Some(code)) => {
                        let currency = iso_currency::Currency::from_code(&code.trim().to_ascii_uppercase())
                            .ok_or_else(|| SiteInputError::BadCurrency(code.chars().take(10).collect()))?;
                        Ok(Self::Revenue { name, currency })
                    }
                }
            }
            other => Err(SiteInputError::BadGoal(format!("unknown goal kind `{}`: expected pageview, event or revenue", other.chars().take(40).collect::<String>()))),
        }
    }

    pub fn default_display_name(&self) -> String {
        let name = match self {
            Self::Pageview { path } => format!("Visit {}", path.0),
            Self::Event { name } | Self::Revenue { name, .. } => name.clone(),
        };
        // The column holds at most 120 characters; long paths are cut.
        name.chars().take(120).collect()
    }
}

#[utoipa::path(get, path = "/api/sites/{site_id}/goals", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 200, body = Vec<GoalView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_goals(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<Vec<GoalView>>> {
    let db = state.pool.get().await?;
    let site = access::site(&db, &caller, &site_ref, Permission::ViewOrganization).await?.site;
    let rows = db.query(&format!("SELECT {GOAL_COLUMNS} FROM goals WHERE site_id = $1 ORDER BY created_at, id"), &[&site.id]).await?;
    Ok(Json(rows.iter().map(goal_view).collect()))
}

#[utoipa::path(post, path = "/api/sites/{site_id}/goals", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body = CreateGoal,
    responses((status = 201, body = GoalView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_goal(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(req): JsonBody<CreateGoal>,
) -> ApiResult<(StatusCode, Json<GoalView>)> {
    let spec = GoalSpec::parse(&req)?;
    let display_name = match req.display_name.as_deref() {
        Some(n) => short_text("display_name", n)?,
        None => spec.default_display_name(),
    };
    let (kind, page_path, event_name, currency): (&str, Option<&str>, Option<&str>, Option<&str>) = match &spec {
        GoalSpec::Pageview { path } => ("pageview", Some(&path.0), None, None),
        GoalSpec::Event { name } => ("event", None, Some(name), None),
        GoalSpec::Revenue { name, currency } => ("revenue", None, Some(name), Some(currency.code())),
    };
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::EditSites).await?.site;
    let id = Uuid::new_v4();
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO goals (id, site_id, kind, display_name, page_path, event_name, currency)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {GOAL_COLUMNS}"
            ),
            &[&id, &site.id, &kind, &display_name, &page_path, &event_name, &currency],
        )
        .await;
    let row = match row {
        Err(e) if is_unique_violation(&e) => return Err(ApiError::conflict(format!("this site already has a goal named `{display_name}`"))),
        other => other?,
    };
    let (who, details) = actor(&caller);
    audit::record(&tx, Some(site.organization_id), who, Action::GoalCreated, Some(&display_name), with(details, serde_json::json!({"site": site.id, "goal": id, "kind": kind})))
        .await?;
    // Rolled-up days know nothing of the new goal: the stats engine reads
    // them raw until the rollup job has re-rolled them, which this asks for.
    tx.execute(
        "INSERT INTO rollup_dirty (site_id, day) SELECT DISTINCT site_id, day FROM daily_rollups WHERE site_id = $1 ON CONFLICT DO NOTHING",
        &[&site.id],
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(goal_view(&row))))
}

#[utoipa::path(delete, path = "/api/sites/{site_id}/goals/{goal_id}", tag = "sites",
    params(("site_id" = String, Path, description = "The site's id or domain"), ("goal_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_goal(State(state): State<AppState>, caller: Caller, ApiPath((site_ref, goal)): ApiPath<(String, Uuid)>) -> ApiResult<StatusCode> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::EditSites).await?.site;
    let name: String = tx
        .query_opt("DELETE FROM goals WHERE id = $1 AND site_id = $2 RETURNING display_name", &[&goal, &site.id])
        .await?
        .ok_or_else(|| ApiError::not_found("no such goal on this site"))?
        .get(0);
    let (who, details) = actor(&caller);
    audit::record(&tx, Some(site.organization_id), who, Action::GoalDeleted, Some(&name), with(details, serde_json::json!({"site": site.id, "goal": goal}))).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- share links

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ShareLinkView {
    pub id: Uuid,
    pub name: String,
    /// The unguessable part of the link.
    pub slug: String,
    /// The public dashboard's address.
    pub url: String,
    pub password_protected: bool,
    pub created_at: DateTime<Utc>,
}

const SHARE_COLUMNS: &str = "id, name, slug, password_hash IS NOT NULL, created_at";

fn share_view(state: &AppState, r: &tokio_postgres::Row) -> ShareLinkView {
    let slug: String = r.get(2);
    ShareLinkView {
        id: r.get(0),
        name: r.get(1),
        url: format!("{}/share/{slug}", state.config.public_url()),
        slug,
        password_protected: r.get(3),
        created_at: r.get(4),
    }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShareLink {
    /// Defaults to "Shared link".
    pub name: Option<String>,
    /// Optional; visitors of the link must then give it (8 to 72 bytes).
    pub password: Option<String>,
}

#[utoipa::path(get, path = "/api/sites/{site_id}/shared-links", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    responses((status = 200, body = Vec<ShareLinkView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_share_links(State(state): State<AppState>, caller: Caller, ApiPath(site_ref): ApiPath<String>) -> ApiResult<Json<Vec<ShareLinkView>>> {
    let db = state.pool.get().await?;
    // A link's slug opens the site's stats, so listing them needs what the stats need.
    let site = access::site(&db, &caller, &site_ref, Permission::ViewStats).await?.site;
    let rows = db.query(&format!("SELECT {SHARE_COLUMNS} FROM share_links WHERE site_id = $1 ORDER BY created_at, id"), &[&site.id]).await?;
    Ok(Json(rows.iter().map(|r| share_view(&state, r)).collect()))
}

#[utoipa::path(post, path = "/api/sites/{site_id}/shared-links", tag = "sites", params(("site_id" = String, Path, description = "The site's id or domain")),
    request_body = CreateShareLink,
    responses((status = 201, body = ShareLinkView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_share_link(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(site_ref): ApiPath<String>,
    JsonBody(req): JsonBody<CreateShareLink>,
) -> ApiResult<(StatusCode, Json<ShareLinkView>)> {
    let name = req.name.as_deref().map(|n| short_text("name", n)).transpose()?.unwrap_or_else(|| "Shared link".into());
    if let Some(p) = &req.password {
        if !(8..=72).contains(&p.len()) {
            return Err(SiteInputError::BadSharePassword.into());
        }
    }
    // Check access before paying for bcrypt.
    let site = {
        let db = state.pool.get().await?;
        access::site(&db, &caller, &site_ref, Permission::EditSites).await?.site
    };
    let password_hash = match req.password {
        Some(p) => Some(accounts::hash_password_blocking(p).await?),
        None => None,
    };
    let slug = OpaqueToken::generate("").token;
    let id = Uuid::new_v4();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site.id.to_string(), Permission::EditSites).await?.site;
    let row = tx
        .query_one(
            &format!("INSERT INTO share_links (id, site_id, slug, name, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING {SHARE_COLUMNS}"),
            &[&id, &site.id, &slug, &name, &password_hash],
        )
        .await?;
    let (who, details) = actor(&caller);
    audit::record(
        &tx,
        Some(site.organization_id),
        who,
        Action::ShareLinkCreated,
        Some(&name),
        with(details, serde_json::json!({"site": site.id, "share_link": id, "password_protected": password_hash.is_some()})),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(share_view(&state, &row))))
}

#[utoipa::path(delete, path = "/api/sites/{site_id}/shared-links/{link_id}", tag = "sites",
    params(("site_id" = String, Path, description = "The site's id or domain"), ("link_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_share_link(State(state): State<AppState>, caller: Caller, ApiPath((site_ref, link)): ApiPath<(String, Uuid)>) -> ApiResult<StatusCode> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let site = access::site(&tx, &caller, &site_ref, Permission::EditSites).await?.site;
    let name: String = tx
        .query_opt("DELETE FROM share_links WHERE id = $1 AND site_id = $2 RETURNING name", &[&link, &site.id])
        .await?
        .ok_or_else(|| ApiError::not_found("no such share link on this site"))?
        .get(0);
    let (who, details) = actor(&caller);
    audit::record(&tx, Some(site.organization_id), who, Action::ShareLinkDeleted, Some(&name), with(details, serde_json::json!({"site": site.id, "share_link": link})))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The site behind a public share link, once its password (if it has one)
/// is given. For the shared dashboard's stats queries: a live link of a
/// live site of a live organisation, or 404; a missing or wrong password 401.
pub async fn resolve_share(db: &impl GenericClient, slug: &str, password: Option<&str>) -> ApiResult<Site> {
    Ok(resolve_share_link(db, slug, password).await?.0)
}

/// [`resolve_share`], with the link's name.
const SHARE_PASSWORD_ATTEMPTS: i64 = 20;

async fn resolve_share_link(db: &impl GenericClient, slug: &str, password: Option<&str>) -> ApiResult<(Site, String)> {
    let not_found = || ApiError::not_found("no such shared dashboard");
    if slug.is_empty() || slug.len() > 100 {
        return Err(not_found());
    }
    let row = db
        .query_opt(
            &format!(
                "SELECT {}, l.name AS link_name, l.password_hash FROM share_links l
                 JOIN sites s ON s.id = l.site_id AND s.deleted_at IS NULL
                 JOIN organizations o ON o.id = s.organization_id AND o.deleted_at IS NULL
                 WHERE l.slug = $1",
                Site::COLUMNS
            ),
            &[&slug],
        )
        .await?
        .ok_or_else(not_found)?;
    if let Some(hash) = row.get::<_, Option<String>>("password_hash") {
        let given = password.ok_or_else(|| ApiError::unauthorized("this shared dashboard is password-protected: send `password` or the X-Share-Password header"))?;
        // Guessing is throttled per link: 20 wrong passwords in 15 minutes lock it for a while.
        let key = format!("share:{slug}");
        let failures: i64 = db
            .query_one(
                "SELECT count(*) FROM login_failures WHERE key = $1 AND failed_at > $2",
                &[&key, &(chrono::Utc::now() - rate_limit::WINDOW)],
            )
            .await?
            .get(0);
        if failures >= SHARE_PASSWORD_ATTEMPTS {
            return Err(ApiError::too_many_requests("too many wrong passwords for this link; wait 15 minutes"));
        }
        if !accounts::verify_password_blocking(given.to_owned(), Some(hash)).await {
            db.execute("INSERT INTO login_failures (key) VALUES ($1)", &[&key]).await?;
            return Err(ApiError::unauthorized("the password of this shared dashboard is wrong"));
        }
    }
    Ok((Site::from_row(&row), row.get("link_name")))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
pub struct SharedQuery {
    /// The link's password, when it has one (or the X-Share-Password header).
    pub password: Option<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SharedSite {
    pub domain: String,
    pub name: String,
    pub timezone: String,
    /// The share link's own name.
    pub link_name: String,
}

/// Public (no sign-in): what a shared dashboard shows about its site.
#[utoipa::path(get, path = "/api/shared/{slug}", tag = "sites", security(()),
    params(("slug" = String, Path), SharedQuery, ("X-Share-Password" = Option<String>, Header)),
    responses((status = 200, body = SharedSite), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn shared_site(
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(q): ApiQuery<SharedQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<SharedSite>> {
    let header = headers.get(SHARE_PASSWORD_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let password = header.or(q.password);
    let db = state.pool.get().await?;
    let (site, link_name) = resolve_share_link(&db, &slug, password.as_deref()).await?;
    Ok(Json(SharedSite { domain: site.domain, name: site.name, timezone: site.timezone, link_name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised() {
        for (raw, want) in [
            ("example.com", "example.com"),
            ("  Example.COM.  ", "example.com"),
            ("https://www.Example.com:8443/path?q=1#x", "www.example.com"),
            ("blog.example.co.uk/", "blog.example.co.uk"),
            ("bücher.de", "xn--bcher-kva.de"),
        ] {
            assert_eq!(Domain::parse(raw).unwrap().as_str(), want, "{raw}");
        }
    }

    #[test]
    fn bad_domains_are_refused() {
        for raw in ["", "localhost", "1.2.3.4", "[::1]", "ftp://example.com", "user@example.com", "exa mple.com", "-a.com", "a-.com", "a..com", "example.123"] {
            assert!(Domain::parse(raw).is_err(), "{raw}");
        }
        assert!(Domain::parse(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn hostname_patterns_allow_a_leading_wildcard() {
        assert_eq!(HostnamePattern::parse("*.Example.com").unwrap().0, "*.example.com");
        assert!(HostnamePattern::parse("a.*.example.com").is_err());
    }

    #[test]
    fn paths_start_with_a_slash() {
        assert!(PathPattern::parse("p", "/blog/*").is_ok());
        for bad in ["blog", "/a b", "", "/\u{7}"] {
            assert!(PathPattern::parse("p", bad).is_err(), "{bad:?}");
        }
    }

    fn goal(kind: &str, path: Option<&str>, event: Option<&str>, currency: Option<&str>) -> Result<GoalSpec, SiteInputError> {
        GoalSpec::parse(&CreateGoal {
            kind: kind.into(),
            page_path: path.map(Into::into),
            event_name: event.map(Into::into),
            currency: currency.map(Into::into),
            display_name: None,
        })
    }

    #[test]
    fn goals_carry_exactly_their_kinds_fields() {
        assert_eq!(goal("pageview", Some("/thanks"), None, None).unwrap().default_display_name(), "Visit /thanks");
        assert_eq!(goal("event", None, Some("Signup"), None).unwrap().default_display_name(), "Signup");
        assert!(matches!(goal("revenue", None, Some("Buy"), Some("eur")).unwrap(), GoalSpec::Revenue { currency: iso_currency::Currency::EUR, .. }));
        assert!(goal("pageview", None, None, None).is_err());
        assert!(goal("pageview", Some("/a"), Some("x"), None).is_err());
        assert!(goal("event", None, Some("x"), Some("EUR")).is_err());
        assert!(goal("revenue", None, Some("x"), None).is_err());
        assert!(goal("revenue", None, Some("x"), Some("XYZ1")).is_err());
        assert!(goal("click", None, Some("x"), None).is_err());
    }

    #[test]
    fn retention_is_bounded() {
        assert!(retention(1).is_ok() && retention(3650).is_ok());
        assert!(retention(0).is_err() && retention(3651).is_err() && retention(-5).is_err());
    }
}
