//! The audit log: who did what to what, and when. Written in the same
//! transaction as the change it records; readable by organisation admins;
//! removed after two years by the retention job.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignIn,
    SignInFailed,
    SignUp,
    SignOut,
    RefreshTokenReused,
    EmailVerified,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    ProfileChanged,
    TotpEnabled,
    TotpDisabled,
    OrganizationCreated,
    OrganizationChanged,
    OrganizationDeleted,
    MemberInvited,
    InvitationRevoked,
    InvitationAccepted,
    MemberRoleChanged,
    MemberRemoved,
    OwnershipTransferred,
    SiteCreated,
    SiteChanged,
    SiteDeleted,
    GoalCreated,
    GoalDeleted,
    ShareLinkCreated,
    ShareLinkDeleted,
    ApiKeyCreated,
    ApiKeyRevoked,
    DataExported,
    StatsExported,
    AccountDeleted,
    BillingDetailsChanged,
    SubscriptionChanged,
    BillingRecordAdded,
    CheckoutStarted,
    BillingPortalOpened,
    VisitorRequestFound,
    VisitorRequestExported,
    VisitorRequestErased,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        use Action::*;
        match self {
            SignIn => "auth.sign_in",
            SignInFailed => "auth.sign_in_failed",
            SignUp => "auth.sign_up",
            SignOut => "auth.sign_out",
            RefreshTokenReused => "auth.refresh_token_reused",
            EmailVerified => "account.email_verified",
            PasswordChanged => "account.password_changed",
            PasswordReset => "account.password_reset",
            EmailChanged => "account.email_changed",
            ProfileChanged => "account.profile_changed",
            TotpEnabled => "account.totp_enabled",
            TotpDisabled => "account.totp_disabled",
            OrganizationCreated => "organization.created",
            OrganizationChanged => "organization.changed",
            OrganizationDeleted => "organization.deleted",
            MemberInvited => "member.invited",
            InvitationRevoked => "member.invitation_revoked",
            InvitationAccepted => "member.invitation_accepted",
            MemberRoleChanged => "member.role_changed",
            MemberRemoved => "member.removed",
            OwnershipTransferred => "organization.ownership_transferred",
            SiteCreated => "site.created",
            SiteChanged => "site.changed",
            SiteDeleted => "site.deleted",
            GoalCreated => "goal.created",
            GoalDeleted => "goal.deleted",
            ShareLinkCreated => "share_link.created",
            ShareLinkDeleted => "share_link.deleted",
            ApiKeyCreated => "api_key.created",
            ApiKeyRevoked => "api_key.revoked",
            DataExported => "account.data_exported",
            StatsExported => "site.stats_exported",
            AccountDeleted => "account.deleted",
            BillingDetailsChanged => "billing.details_changed",
            SubscriptionChanged => "billing.subscription_changed",
            BillingRecordAdded => "billing.record_added",
            CheckoutStarted => "billing.checkout_started",
            BillingPortalOpened => "billing.portal_opened",
            VisitorRequestFound => "visitor_request.found",
            VisitorRequestExported => "visitor_request.exported",
            VisitorRequestErased => "visitor_request.erased",
        }
    }
}

/// One entry. `organization` is None for account-level actions; they are
/// then recorded once per organisation the actor belongs to, so each team's
/// admins see sign-ins of their members.
pub async fn record(
    db: &impl GenericClient,
    organization: Option<Uuid>,
    actor: Option<Uuid>,
    action: Action,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    match organization {
        Some(org) => {
            db.execute(
                "INSERT INTO audit_log (organization_id, actor_user_id, action, target, details) VALUES ($1, $2, $3, $4, $5)",
                &[&org, &actor, &action.as_str(), &target, &details],
            )
            .await?;
        }
        None => {
            let n = db
                .execute(
                    "INSERT INTO audit_log (organization_id, actor_user_id, action, target, details)
                     SELECT organization_id, $1, $2, $3, $4 FROM memberships WHERE user_id = $1",
                    &[&actor, &action.as_str(), &target, &details],
                )
                .await?;
            if n == 0 {
                db.execute(
                    "INSERT INTO audit_log (organization_id, actor_user_id, action, target, details) VALUES (NULL, $1, $2, $3, $4)",
                    &[&actor, &action.as_str(), &target, &details],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub actor_user_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Newest first; `before` pages backwards by id.
pub async fn list(db: &impl GenericClient, organization: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<Entry>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT a.id, a.actor_user_id, u.email, a.action, a.target, a.details, a.created_at
             FROM audit_log a LEFT JOIN users u ON u.id = a.actor_user_id
             WHERE a.organization_id = $1 AND ($2::bigint IS NULL OR a.id < $2)
             ORDER BY a.id DESC LIMIT $3",
            &[&organization, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            actor_user_id: r.get(1),
            actor_email: r.get(2),
            action: r.get(3),
            target: r.get(4),
            details: r.get(5),
            created_at: r.get(6),
        })
        .collect())
}
