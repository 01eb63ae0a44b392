//! Organisations and teams: create and list organisations, rename and delete
//! them, members and their roles, invitations by email, ownership transfer,
//! the audit log and stats API keys.
//!
//! Every handler asks [`access::organization`] first, inside the transaction
//! that makes the change, after locking the organisation row: concurrent
//! role changes of one team are serialised, so "the last owner" stays true
//! between the check and the write.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::access::{self, OrganizationAccess};
use super::{ApiPath, ApiQuery, ErrorBody, JsonBody, now};
use crate::accounts::slugify;
use crate::audit::{self, Action};
use crate::auth::caller::{API_KEY_PREFIX, Scope};
use crate::auth::credentials::Email;
use crate::auth::opaque::{self, OpaqueToken};
use crate::auth::{Caller, Permission, Role, SignedInUser};
use crate::error::{ApiError, ApiResult};
use crate::mail::Mail;
use crate::state::AppState;

/// How long an invitation link stays valid.
pub const INVITATION_TTL: Duration = Duration::days(7);
/// Characters of an API key kept in clear to tell keys apart in lists.
const API_KEY_SHOWN_CHARS: usize = 12;
const MAX_SETTINGS_BYTES: usize = 16 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_organizations, create_organization))
        .routes(routes!(get_organization, update_organization, delete_organization))
        .routes(routes!(list_members))
        .routes(routes!(change_member_role, remove_member))
        .routes(routes!(transfer_ownership))
        .routes(routes!(list_invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(audit_log))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

/// Bad input for an organisation, each with the reason the client sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrganizationInputError {
    #[error("`slug` must be 1 to 63 characters of a-z, 0-9 and `-`, starting with a letter or digit")]
    BadSlug,
    #[error("`name` must be 1 to 200 characters, without control characters")]
    BadName,
    #[error("`settings` must be a JSON object of at most 16 KiB")]
    BadSettings,
}

impl From<OrganizationInputError> for ApiError {
    fn from(e: OrganizationInputError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// An organisation's URL name, checked as the database's CHECK would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<Self, OrganizationInputError> {
        let s = raw.trim();
        let ok = (1..=63).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok { Ok(Self(s.to_owned())) } else { Err(OrganizationInputError::BadSlug) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<Self, OrganizationInputError> {
        let s = raw.trim();
        let n = s.chars().count();
        if (1..=200).contains(&n) && !s.chars().any(char::is_control) {
            Ok(Self(s.to_owned()))
        } else {
            Err(OrganizationInputError::BadName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_settings(value: serde_json::Value) -> Result<serde_json::Value, OrganizationInputError> {
    if value.is_object() && value.to_string().len() <= MAX_SETTINGS_BYTES { Ok(value) } else { Err(OrganizationInputError::BadSettings) }
}

fn parse_role(raw: &str) -> ApiResult<Role> {
    raw.parse::<Role>().map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A unique index said no: the name is taken.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Locks the organisation row (so membership changes of one team run one at
/// a time), then checks the caller's standing.
async fn lock_and_check(db: &impl GenericClient, user: SignedInUser, org: Uuid, need: Permission) -> ApiResult<(OrganizationAccess, Role)> {
    db.execute("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE", &[&org]).await?;
    let access = access::organization(db, &Caller::User(user), org, need).await?;
    let role = access.role.ok_or_else(|| ApiError::forbidden("API keys cannot use this endpoint; sign in as a user"))?;
    Ok((access, role))
}

async fn member_role(db: &impl GenericClient, org: Uuid, user: Uuid) -> ApiResult<Role> {
    let row = db
        .query_opt("SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2", &[&org, &user])
        .await?
        .ok_or_else(|| ApiError::not_found("no such member in this organization"))?;
    row.get::<_, String>(0).parse().map_err(ApiError::internal)
}

async fn owner_count(db: &impl GenericClient, org: Uuid) -> ApiResult<i64> {
    Ok(db.query_one("SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'owner'", &[&org]).await?.get(0))
}

fn last_owner() -> ApiError {
    ApiError::conflict("the organization's last owner cannot leave, be removed or be demoted; transfer ownership first")
}

// ---------------------------------------------------------------- organisations

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OrganizationView {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// The caller's role; null for API keys.
    pub role: Option<String>,
    pub created_at: DateTime<Utc>,
}

async fn organization_view(db: &impl GenericClient, org: Uuid, role: Option<Role>) -> ApiResult<OrganizationView> {
    let r = db
        .query_opt("SELECT id, name, slug, settings, created_at FROM organizations WHERE id = $1 AND deleted_at IS NULL", &[&org])
        .await?
        .ok_or_else(|| ApiError::not_found("organization not found"))?;
    Ok(OrganizationView {
        id: r.get(0),
        name: r.get(1),
        slug: r.get(2),
        settings: r.get(3),
        role: role.map(|r| r.as_str().to_owned()),
        created_at: r.get(4),
    })
}

/// The organisations I belong to, with my role in each.
#[utoipa::path(get, path = "/api/organizations", tag = "organizations",
    responses((status = 200, body = Vec<OrganizationView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_organizations(State(state): State<AppState>, user: SignedInUser) -> ApiResult<Json<Vec<OrganizationView>>> {
    let db = state.pool.get().await?;
    let rows = db
        .query(
            "SELECT o.id, o.name, o.slug, o.settings, o.created_at, m.role FROM memberships m
             JOIN organizations o ON o.id = m.organization_id
             WHERE m.user_id = $1 AND o.deleted_at IS NULL ORDER BY o.created_at, o.id",
            &[&user.user_id],
        )
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| OrganizationView { id: r.get(0), name: r.get(1), slug: r.get(2), settings: r.get(3), created_at: r.get(4), role: Some(r.get(5)) })
            .collect(),
    ))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    /// Defaults to one made from the name.
    pub slug: Option<String>,
}

/// A new organisation; the caller becomes its owner.
#[utoipa::path(post, path = "/api/organizations", tag = "organizations", request_body = CreateOrganization,
    responses((status = 201, body = OrganizationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_organization(
    State(state): State<AppState>,
    user: SignedInUser,
    JsonBody(req): JsonBody<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<OrganizationView>)> {
    let name = OrgName::parse(&req.name)?;
    let slug = match req.slug.as_deref() {
        Some(s) => OrgSlug::parse(s)?,
        // A made-up slug must not collide; a random tail makes that unlikely.
        None => OrgSlug::parse(&format!("{}-{}", slugify(name.as_str()), &Uuid::new_v4().simple().to_string()[..6]))?,
    };
    let org = Uuid::new_v4();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING",
            &[&org, &name.as_str(), &slug.as_str()],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::conflict(format!("the slug `{}` is taken", slug.as_str())));
    }
    tx.execute("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')", &[&org, &user.user_id]).await?;
    audit::record(&tx, Some(org), Some(user.user_id), Action::OrganizationCreated, Some(&org.to_string()), serde_json::json!({"slug": slug.as_str()}))
        .await?;
    let view = organization_view(&tx, org, Some(Role::Owner)).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/organizations/{org_id}", tag = "organizations", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = OrganizationView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_organization(State(state): State<AppState>, caller: Caller, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<OrganizationView>> {
    let db = state.pool.get().await?;
    let access = access::organization(&db, &caller, org, Permission::ViewOrganization).await?;
    Ok(Json(organization_view(&db, org, access.role).await?))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// Replaces the settings object whole.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

/// Rename, change the slug or the settings (owners only).
#[utoipa::path(patch, path = "/api/organizations/{org_id}", tag = "organizations", params(("org_id" = Uuid, Path)),
    request_body = UpdateOrganization,
    responses((status = 200, body = OrganizationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_organization(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<UpdateOrganization>,
) -> ApiResult<Json<OrganizationView>> {
    // Parse everything before touching the database: one bad field changes nothing.
    let name = req.name.as_deref().map(OrgName::parse).transpose()?;
    let slug = req.slug.as_deref().map(OrgSlug::parse).transpose()?;
    let settings = req.settings.map(parse_settings).transpose()?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (_, role) = lock_and_check(&tx, user, org, Permission::OwnOrganization).await?;
    let mut fields = Vec::new();
    if let Some(name) = &name {
        tx.execute("UPDATE organizations SET name = $2 WHERE id = $1", &[&org, &name.as_str()]).await?;
        fields.push("name");
    }
    if let Some(slug) = &slug {
        let taken = tx.query_opt("SELECT 1 FROM organizations WHERE slug = $1 AND id <> $2", &[&slug.as_str(), &org]).await?;
        if taken.is_some() {
            return Err(ApiError::conflict(format!("the slug `{}` is taken", slug.as_str())));
        }
        tx.execute("UPDATE organizations SET slug = $2 WHERE id = $1", &[&org, &slug.as_str()]).await?;
        fields.push("slug");
    }
    if let Some(settings) = &settings {
        tx.execute("UPDATE organizations SET settings = $2 WHERE id = $1", &[&org, settings]).await?;
        fields.push("settings");
    }
    if !fields.is_empty() {
        audit::record(&tx, Some(org), Some(user.user_id), Action::OrganizationChanged, Some(&org.to_string()), serde_json::json!({"fields": fields}))
            .await?;
    }
    let view = organization_view(&tx, org, Some(role)).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Owners only. Soft delete: the organisation disappears for everyone, its
/// sites stop accepting events, its API keys and pending invitations die.
#[utoipa::path(delete, path = "/api/organizations/{org_id}", tag = "organizations", params(("org_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_organization(State(state): State<AppState>, user: SignedInUser, ApiPath(org): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    lock_and_check(&tx, user, org, Permission::OwnOrganization).await?;
    tx.execute("UPDATE organizations SET deleted_at = $2 WHERE id = $1", &[&org, &now]).await?;
    let sites = tx.execute("UPDATE sites SET active = false WHERE organization_id = $1 AND deleted_at IS NULL", &[&org]).await?;
    tx.execute("UPDATE api_keys SET revoked_at = $2 WHERE organization_id = $1 AND revoked_at IS NULL", &[&org, &now]).await?;
    tx.execute("DELETE FROM invitations WHERE organization_id = $1 AND accepted_at IS NULL", &[&org]).await?;
    audit::record(&tx, Some(org), Some(user.user_id), Action::OrganizationDeleted, Some(&org.to_string()), serde_json::json!({"sites_deactivated": sites}))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------- members

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

const MEMBER_COLUMNS: &str = "u.id, u.email, u.name, m.role, m.created_at";

fn member_view(r: &tokio_postgres::Row) -> MemberView {
    MemberView { user_id: r.get(0), email: r.get(1), name: r.get(2), role: r.get(3), joined_at: r.get(4) }
}

#[utoipa::path(get, path = "/api/organizations/{org_id}/members", tag = "organizations", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = Vec<MemberView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_members(State(state): State<AppState>, user: SignedInUser, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<Vec<MemberView>>> {
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ViewOrganization).await?;
    let rows = db
        .query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.organization_id = $1 ORDER BY m.created_at, u.email"
            ),
            &[&org],
        )
        .await?;
    Ok(Json(rows.iter().map(member_view).collect()))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    /// owner, admin, editor, viewer or billing.
    pub role: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct RoleChanged {
    pub user_id: Uuid,
    pub role: String,
}

/// Change a member's role. Nobody changes their own role (ownership moves
/// only by transfer); only owners touch owners or make new ones.
#[utoipa::path(patch, path = "/api/organizations/{org_id}/members/{user_id}", tag = "organizations",
    params(("org_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = ChangeRole,
    responses((status = 200, body = RoleChanged), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn change_member_role(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath((org, target)): ApiPath<(Uuid, Uuid)>,
    JsonBody(req): JsonBody<ChangeRole>,
) -> ApiResult<Json<RoleChanged>> {
    let new_role = parse_role(&req.role)?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (_, my_role) = lock_and_check(&tx, user, org, Permission::ManageMembers).await?;
    if target == user.user_id {
        return Err(ApiError::forbidden("you cannot change your own role; an owner hands ownership over with transfer-ownership"));
    }
    let old_role = member_role(&tx, org, target).await?;
    if my_role != Role::Owner && (old_role == Role::Owner || new_role == Role::Owner) {
        return Err(ApiError::forbidden("only owners can change an owner's role or make someone an owner"));
    }
    if old_role == Role::Owner && new_role != Role::Owner && owner_count(&tx, org).await? <= 1 {
        return Err(last_owner());
    }
    if old_role != new_role {
        tx.execute("UPDATE memberships SET role = $3 WHERE organization_id = $1 AND user_id = $2", &[&org, &target, &new_role.as_str()]).await?;
        audit::record(
            &tx,
            Some(org),
            Some(user.user_id),
            Action::MemberRoleChanged,
            Some(&target.to_string()),
            serde_json::json!({"from": old_role.as_str(), "to": new_role.as_str()}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(RoleChanged { user_id: target, role: new_role.as_str().to_owned() }))
}

/// Remove a member, or leave (any member may remove themself), except the last owner.
#[utoipa::path(delete, path = "/api/organizations/{org_id}/members/{user_id}", tag = "organizations",
    params(("org_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_member(State(state): State<AppState>, user: SignedInUser, ApiPath((org, target)): ApiPath<(Uuid, Uuid)>) -> ApiResult<StatusCode> {
    let leaving = target == user.user_id;
    let need = if leaving { Permission::ViewOrganization } else { Permission::ManageMembers };
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (_, my_role) = lock_and_check(&tx, user, org, need).await?;
    let target_role = member_role(&tx, org, target).await?;
    if !leaving && target_role == Role::Owner && my_role != Role::Owner {
        return Err(ApiError::forbidden("only owners can remove an owner"));
    }
    if target_role == Role::Owner && owner_count(&tx, org).await? <= 1 {
        return Err(last_owner());
    }
    tx.execute("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2", &[&org, &target]).await?;
    audit::record(
        &tx,
        Some(org),
        Some(user.user_id),
        Action::MemberRemoved,
        Some(&target.to_string()),
        serde_json::json!({"role": target_role.as_str(), "left": leaving}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferOwnership {
    /// A member of the organisation.
    pub user_id: Uuid,
}

/// Owners only: the member becomes an owner and the caller an admin.
#[utoipa::path(post, path = "/api/organizations/{org_id}/transfer-ownership", tag = "organizations",
    params(("org_id" = Uuid, Path)), request_body = TransferOwnership,
    responses((status = 200, body = Vec<MemberView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn transfer_ownership(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<TransferOwnership>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    lock_and_check(&tx, user, org, Permission::OwnOrganization).await?;
    if req.user_id == user.user_id {
        return Err(ApiError::bad_request("`user_id` is you; name the member who should become the owner"));
    }
    let previous = member_role(&tx, org, req.user_id).await?;
    tx.execute("UPDATE memberships SET role = 'owner' WHERE organization_id = $1 AND user_id = $2", &[&org, &req.user_id]).await?;
    tx.execute("UPDATE memberships SET role = 'admin' WHERE organization_id = $1 AND user_id = $2", &[&org, &user.user_id]).await?;
    audit::record(
        &tx,
        Some(org),
        Some(user.user_id),
        Action::OwnershipTransferred,
        Some(&req.user_id.to_string()),
        serde_json::json!({"new_owner_previous_role": previous.as_str(), "previous_owner_now": "admin"}),
    )
    .await?;
    tx.commit().await?;
    let rows = db
        .query(
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.organization_id = $1 AND m.user_id = ANY($2) ORDER BY m.created_at"
            ),
            &[&org, &vec![req.user_id, user.user_id]],
        )
        .await?;
    Ok(Json(rows.iter().map(member_view).collect()))
}

// ---------------------------------------------------------------- invitations

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub invited_by: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub expired: bool,
    pub created_at: DateTime<Utc>,
}

fn invitation_view(r: &tokio_postgres::Row, now: DateTime<Utc>) -> InvitationView {
    let expires_at: DateTime<Utc> = r.get(4);
    InvitationView { id: r.get(0), email: r.get(1), role: r.get(2), invited_by: r.get(3), expires_at, expired: expires_at <= now, created_at: r.get(5) }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    pub email: String,
    /// owner, admin, editor, viewer or billing; only owners invite owners.
    pub role: String,
}

/// Mails an invitation link, valid for 7 days, once. A newer invitation to
/// the same address replaces an older pending one.
#[utoipa::path(post, path = "/api/organizations/{org_id}/invitations", tag = "organizations",
    params(("org_id" = Uuid, Path)), request_body = Invite,
    responses((status = 201, body = InvitationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 402, body = ErrorBody, description = "the plan's member limit is reached"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn invite(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<Invite>,
) -> ApiResult<(StatusCode, Json<InvitationView>)> {
    let email = Email::parse(&req.email)?;
    let role = parse_role(&req.role)?;
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let (_, my_role) = lock_and_check(&tx, user, org, Permission::ManageMembers).await?;
    if role == Role::Owner && my_role != Role::Owner {
        return Err(ApiError::forbidden("only owners can invite an owner"));
    }
    let member = tx
        .query_opt(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = $1 AND u.email = $2",
            &[&org, &email.as_str()],
        )
        .await?;
    if member.is_some() {
        return Err(ApiError::conflict("this person is already a member"));
    }
    tx.execute("DELETE FROM invitations WHERE organization_id = $1 AND email = $2 AND accepted_at IS NULL", &[&org, &email.as_str()])
        .await?;
    crate::billing::limits::check_new_member(&tx, org, None).await?;
    let token = OpaqueToken::generate("");
    let id = Uuid::new_v4();
    let row = tx
        .query_one(
            "INSERT INTO invitations (id, organization_id, email, role, token_hash, invited_by, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, email, role, invited_by, expires_at, created_at",
            &[&id, &org, &email.as_str(), &role.as_str(), &token.hash, &user.user_id, &(now + INVITATION_TTL), &now],
        )
        .await?;
    audit::record(&tx, Some(org), Some(user.user_id), Action::MemberInvited, Some(email.as_str()), serde_json::json!({"role": role.as_str(), "invitation": id}))
        .await?;
    let names = tx
        .query_one("SELECT o.name, coalesce(u.name, u.email) FROM organizations o, users u WHERE o.id = $1 AND u.id = $2", &[&org, &user.user_id])
        .await?;
    tx.commit().await?;
    let link = format!("{}/accept-invite?token={}", state.config.public_url(), token.token);
    let (org_name, inviter): (String, String) = (names.get(0), names.get(1));
    state
        .mailer
        .send(Mail::transactional(
            email.as_str().to_owned(),
            format!("You are invited to {org_name} on EngageTrack"),
            format!(
                "{inviter} invited you to join {org_name} on EngageTrack as {role}.\n\nAccept by opening this link (valid for 7 days, once), signed in with this email address:\n{link}\n\nIf you did not expect this, ignore this mail."
            ),
        ))
        .await?;
    Ok((StatusCode::CREATED, Json(invitation_view(&row, now))))
}

/// Pending (not yet accepted) invitations, newest first.
#[utoipa::path(get, path = "/api/organizations/{org_id}/invitations", tag = "organizations", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = Vec<InvitationView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_invitations(State(state): State<AppState>, user: SignedInUser, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<Vec<InvitationView>>> {
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ManageMembers).await?;
    let rows = db
        .query(
            "SELECT id, email, role, invited_by, expires_at, created_at FROM invitations
             WHERE organization_id = $1 AND accepted_at IS NULL ORDER BY created_at DESC",
            &[&org],
        )
        .await?;
    let now = now();
    Ok(Json(rows.iter().map(|r| invitation_view(r, now)).collect()))
}

#[utoipa::path(delete, path = "/api/organizations/{org_id}/invitations/{invitation_id}", tag = "organizations",
    params(("org_id" = Uuid, Path), ("invitation_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_invitation(State(state): State<AppState>, user: SignedInUser, ApiPath((org, id)): ApiPath<(Uuid, Uuid)>) -> ApiResult<StatusCode> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    lock_and_check(&tx, user, org, Permission::ManageMembers).await?;
    let email: String = tx
        .query_opt("DELETE FROM invitations WHERE id = $1 AND organization_id = $2 AND accepted_at IS NULL RETURNING email", &[&id, &org])
        .await?
        .ok_or_else(|| ApiError::not_found("no such pending invitation"))?
        .get(0);
    audit::record(&tx, Some(org), Some(user.user_id), Action::InvitationRevoked, Some(&email), serde_json::json!({"invitation": id})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The token from the mailed link.
    pub token: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Joined {
    pub organization_id: Uuid,
    pub role: String,
}

/// Join the organisation: the signed-in account's verified email must be the
/// one the invitation was sent to.
#[utoipa::path(post, path = "/api/invitations/accept", tag = "organizations", request_body = AcceptInvitation,
    responses((status = 200, body = Joined), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 402, body = ErrorBody, description = "the plan's member limit is reached"),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn accept_invitation(State(state): State<AppState>, user: SignedInUser, JsonBody(req): JsonBody<AcceptInvitation>) -> ApiResult<Json<Joined>> {
    let now = now();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let inv = tx
        .query_opt(
            "SELECT i.id, i.organization_id, i.email, i.role, i.expires_at, i.accepted_at FROM invitations i
             JOIN organizations o ON o.id = i.organization_id AND o.deleted_at IS NULL
             WHERE i.token_hash = $1 FOR UPDATE OF i",
            &[&opaque::hash(req.token.trim())],
        )
        .await?
        .ok_or_else(|| ApiError::bad_request("the invitation link is invalid or was withdrawn"))?;
    let (id, org, invited_email, role): (Uuid, Uuid, String, String) = (inv.get(0), inv.get(1), inv.get(2), inv.get(3));
    if inv.get::<_, Option<DateTime<Utc>>>(5).is_some() {
        return Err(ApiError::bad_request("this invitation was already used"));
    }
    if inv.get::<_, DateTime<Utc>>(4) <= now {
        return Err(ApiError::bad_request("this invitation expired; ask for a new one"));
    }
    let me = tx.query_one("SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1", &[&user.user_id]).await?;
    if me.get::<_, String>(0) != invited_email {
        return Err(ApiError::forbidden("this invitation was sent to another email address; sign in with that address"));
    }
    if !me.get::<_, bool>(1) {
        return Err(ApiError::forbidden("confirm your email address first"));
    }
    crate::billing::limits::check_new_member(&tx, org, Some(id)).await?;
    let joined = tx
        .execute(
            "INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&org, &user.user_id, &role, &now],
        )
        .await?;
    if joined == 0 {
        return Err(ApiError::conflict("you are already a member of this organization"));
    }
    tx.execute("UPDATE invitations SET accepted_at = $2 WHERE id = $1", &[&id, &now]).await?;
    audit::record(&tx, Some(org), Some(user.user_id), Action::InvitationAccepted, Some(&user.user_id.to_string()), serde_json::json!({"invitation": id, "role": role}))
        .await?;
    tx.commit().await?;
    Ok(Json(Joined { organization_id: org, role }))
}

// ---------------------------------------------------------------- audit log

#[derive(Debug, serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries with an id below this (the `next_before` of the previous page).
    pub before: Option<i64>,
    /// 1 to 200; 50 by default.
    pub limit: Option<i64>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `before` for the next (older) page; null at the end.
    pub next_before: Option<i64>,
}

/// Newest first. Owners and admins.
#[utoipa::path(get, path = "/api/organizations/{org_id}/audit-log", tag = "organizations",
    params(("org_id" = Uuid, Path), AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn audit_log(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 200"));
    }
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ViewAuditLog).await?;
    let entries = audit::list(&db, org, q.before, limit).await?;
    let next_before = if entries.len() as i64 == limit { entries.last().map(|e| e.id) } else { None };
    Ok(Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryView {
                id: e.id,
                actor_user_id: e.actor_user_id,
                actor_email: e.actor_email,
                action: e.action,
                target: e.target,
                details: e.details,
                created_at: e.created_at,
            })
            .collect(),
        next_before,
    }))
}

// ---------------------------------------------------------------- API keys

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart; the rest is never shown again.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const API_KEY_COLUMNS: &str = "id, name, prefix, scopes, created_by, created_at, last_used_at, revoked_at";

fn api_key_view(r: &tokio_postgres::Row) -> ApiKeyView {
    ApiKeyView {
        id: r.get(0),
        name: r.get(1),
        prefix: r.get(2),
        scopes: r.get(3),
        created_by: r.get(4),
        created_at: r.get(5),
        last_used_at: r.get(6),
        revoked_at: r.get(7),
    }
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// Any of `stats:read`, `sites:read`, `sites:write`.
    pub scopes: Vec<String>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub info: ApiKeyView,
    /// The whole key (`etk_…`). Shown this once; only its hash is kept.
    pub key: String,
}

fn parse_scopes(raw: &[String]) -> ApiResult<Vec<Scope>> {
    if raw.is_empty() {
        return Err(ApiError::bad_request("`scopes` must name at least one of stats:read, sites:read, sites:write"));
    }
    let mut scopes = Vec::new();
    for s in raw {
        let scope = Scope::parse(s).ok_or_else(|| ApiError::bad_request(format!("unknown scope `{s}`: expected stats:read, sites:read or sites:write")))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

#[utoipa::path(get, path = "/api/organizations/{org_id}/api-keys", tag = "organizations", params(("org_id" = Uuid, Path)),
    responses((status = 200, body = Vec<ApiKeyView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_api_keys(State(state): State<AppState>, user: SignedInUser, ApiPath(org): ApiPath<Uuid>) -> ApiResult<Json<Vec<ApiKeyView>>> {
    let db = state.pool.get().await?;
    access::organization(&db, &Caller::User(user), org, Permission::ManageApiKeys).await?;
    let rows = db.query(&format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE organization_id = $1 ORDER BY created_at DESC"), &[&org]).await?;
    Ok(Json(rows.iter().map(api_key_view).collect()))
}

/// A new stats API key; the answer holds the key, shown this once.
#[utoipa::path(post, path = "/api/organizations/{org_id}/api-keys", tag = "organizations", params(("org_id" = Uuid, Path)),
    request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_api_key(
    State(state): State<AppState>,
    user: SignedInUser,
    ApiPath(org): ApiPath<Uuid>,
    JsonBody(req): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let name = super::sites::short_text("name", &req.name)?;
    let scopes: Vec<&str> = parse_scopes(&req.scopes)?.into_iter().map(Scope::as_str).collect();
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    access::organization(&tx, &Caller::User(user), org, Permission::ManageApiKeys).await?;
    let key = OpaqueToken::generate(API_KEY_PREFIX);
    let prefix: String = key.token.chars().take(API_KEY_SHOWN_CHARS).collect();
    let id = Uuid::new_v4();
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, scopes, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {API_KEY_COLUMNS}"
            ),
            &[&id, &org, &name, &prefix, &key.hash, &scopes, &user.user_id],
        )
        .await?;
    audit::record(&tx, Some(org), Some(user.user_id), Action::ApiKeyCreated, Some(&id.to_string()), serde_json::json!({"name": name, "prefix": prefix, "scopes": scopes}))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { info: api_key_view(&row), key: key.token })))
}

#[utoipa::path(delete, path = "/api/organizations/{org_id}/api-keys/{key_id}", tag = "organizations",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_api_key(State(state): State<AppState>, user: SignedInUser, ApiPath((org, id)): ApiPath<(Uuid, Uuid)>) -> ApiResult<StatusCode> {
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    access::organization(&tx, &Caller::User(user), org, Permission::ManageApiKeys).await?;
    let prefix: String = tx
        .query_opt(
            "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL RETURNING prefix",
            &[&id, &org, &now()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such active API key"))?
        .get(0);
    audit::record(&tx, Some(org), Some(user.user_id), Action::ApiKeyRevoked, Some(&id.to_string()), serde_json::json!({"prefix": prefix})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_database_rule() {
        assert_eq!(OrgSlug::parse(" acme-2 ").unwrap().as_str(), "acme-2");
        for bad in ["", "-acme", "Acme", "ac me", "acmé", &"a".repeat(64)] {
            assert_eq!(OrgSlug::parse(bad), Err(OrganizationInputError::BadSlug), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(OrgName::parse("  Acme  ").unwrap().as_str(), "Acme");
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse("a\u{7}b").is_err());
        assert!(OrgName::parse(&"x".repeat(201)).is_err());
    }

    #[test]
    fn settings_must_be_an_object() {
        assert!(parse_settings(serde_json::json!({"a": 1})).is_ok());
        assert!(parse_settings(serde_json::json!([1])).is_err());
        assert!(parse_settings(serde_json::json!({"a": "x".repeat(MAX_SETTINGS_BYTES)})).is_err());
    }

    #[test]
    fn scopes_parse_dedup_and_refuse_unknown() {
        let s = parse_scopes(&["sites:read".into(), "sites:read".into(), "stats:read".into()]).unwrap();
        assert_eq!(s, vec![Scope::SitesRead, Scope::StatsRead]);
        assert!(parse_scopes(&[]).is_err());
        assert!(parse_scopes(&["admin".into()]).is_err());
    }
}
