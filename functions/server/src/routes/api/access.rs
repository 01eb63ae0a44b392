//! Authorisation: may this caller do this to this organisation or site?
//! Every route that touches an organisation or a site goes through here.
//! Not being a member reads as "not found" (404), so ids of other tenants'
//! things leak nothing; a member whose role falls short gets 403.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::auth::caller::{ApiKeyCaller, Scope};
use crate::auth::{Caller, Permission, Role};
use crate::error::{ApiError, ApiResult};
use crate::sites::Site;

/// Which API-key scope stands for a permission; None: keys may never.
fn scope_for(permission: Permission) -> Option<Scope> {
    match permission {
        Permission::ViewStats => Some(Scope::StatsRead),
        Permission::ViewOrganization => Some(Scope::SitesRead),
        Permission::EditSites => Some(Scope::SitesWrite),
        _ => None,
    }
}

fn key_allows(key: &ApiKeyCaller, permission: Permission) -> ApiResult<()> {
    match scope_for(permission) {
        Some(scope) if key.scopes.contains(&scope) => Ok(()),
        Some(scope) => Err(ApiError::forbidden(format!("this API key lacks the `{}` scope", scope.as_str()))),
        None => Err(ApiError::forbidden("API keys cannot use this endpoint; sign in as a user")),
    }
}

fn role_allows(role: Role, permission: Permission) -> ApiResult<()> {
    if role.allows(permission) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("your role ({role}) does not allow this")))
    }
}

/// The caller's standing in an organisation.
#[derive(Debug, Clone, Copy)]
pub struct OrganizationAccess {
    pub organization_id: Uuid,
    /// None for API keys.
    pub role: Option<Role>,
}

pub async fn organization(db: &impl GenericClient, caller: &Caller, organization_id: Uuid, need: Permission) -> ApiResult<OrganizationAccess> {
    let not_found = || ApiError::not_found("organization not found");
    match caller {
        Caller::User(user) => {
            let role: String = db
                .query_opt(
                    "SELECT m.role FROM memberships m JOIN organizations o ON o.id = m.organization_id
                     WHERE m.organization_id = $1 AND m.user_id = $2 AND o.deleted_at IS NULL",
                    &[&organization_id, &user.user_id],
                )
                .await?
                .ok_or_else(not_found)?
                .get(0);
            let role: Role = role.parse().map_err(ApiError::internal)?;
            role_allows(role, need)?;
            Ok(OrganizationAccess { organization_id, role: Some(role) })
        }
        Caller::ApiKey(key) => {
            if key.organization_id != organization_id {
                return Err(not_found());
            }
            key_allows(key, need)?;
            Ok(OrganizationAccess { organization_id, role: None })
        }
    }
}

#[derive(Debug, Clone)]
pub struct SiteAccess {
    pub site: Site,
    pub role: Option<Role>,
}

/// `site_ref` is the site's id or, as Plausible's API takes it, its domain
/// (the oldest matching site the caller can see).
pub async fn site(db: &impl GenericClient, caller: &Caller, site_ref: &str, need: Permission) -> ApiResult<SiteAccess> {
    let not_found = || ApiError::not_found("site not found");
    let by_id = Uuid::parse_str(site_ref).ok();
    let (user, key_org) = match caller {
        Caller::User(u) => (Some(u.user_id), None),
        Caller::ApiKey(k) => (None, Some(k.organization_id)),
    };
    let row = db
        .query_opt(
            &format!(
                "SELECT {}, m.role FROM sites s
                 JOIN organizations o ON o.id = s.organization_id AND o.deleted_at IS NULL
                 LEFT JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = $3
                 WHERE s.deleted_at IS NULL
                   AND (($1::uuid IS NOT NULL AND s.id = $1) OR ($1::uuid IS NULL AND s.domain = $2))
                   AND (m.user_id IS NOT NULL OR s.organization_id = $4)
                 ORDER BY s.created_at LIMIT 1",
                Site::COLUMNS
            ),
            &[&by_id, &site_ref.to_lowercase(), &user, &key_org],
        )
        .await?
        .ok_or_else(not_found)?;
    let site = Site::from_row(&row);
    match caller {
        Caller::User(_) => {
            let role: Role = row.get::<_, String>("role").parse().map_err(ApiError::internal)?;
            role_allows(role, need)?;
            Ok(SiteAccess { site, role: Some(role) })
        }
        Caller::ApiKey(key) => {
            key_allows(key, need)?;
            Ok(SiteAccess { site, role: None })
        }
    }
}
