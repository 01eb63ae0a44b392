//! The plan's site and member limits, enforced where sites and invitations
//! are made. The check locks the organisation's subscription row, so two
//! creations at once cannot both take the last free place.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::quota::EFFECTIVE_PLAN_SQL;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("the {plan} plan allows {max} sites and this organisation has {used}; remove a site or upgrade the plan")]
    Sites { plan: String, max: i32, used: i64 },
    #[error(
        "the {plan} plan allows {max} members and this organisation has {used} (members and open invitations); \
         remove a member, withdraw an invitation or upgrade the plan"
    )]
    Members { plan: String, max: i32, used: i64 },
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

async fn lock_limits(db: &impl GenericClient, org: Uuid) -> Result<(String, i32, i32), LimitError> {
    db.execute("SELECT 1 FROM subscriptions WHERE organization_id = $1 FOR UPDATE", &[&org]).await?;
    let row = db
        .query_one(
            &format!("SELECT q.plan_name, q.max_sites, q.max_members FROM ({EFFECTIVE_PLAN_SQL}) q WHERE q.organization_id = $1"),
            &[&org],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Before a site is made: a place is free under the plan.
pub async fn check_new_site(db: &impl GenericClient, org: Uuid) -> Result<(), LimitError> {
    let (plan, max, _) = lock_limits(db, org).await?;
    let used: i64 = db.query_one("SELECT count(*) FROM sites WHERE organization_id = $1 AND deleted_at IS NULL", &[&org]).await?.get(0);
    if used >= i64::from(max) {
        return Err(LimitError::Sites { plan, max, used });
    }
    Ok(())
}

/// Before an invitation is sent (`accepting`: None) or accepted (`Some(id)`,
/// which then already holds its place): members plus open invitations fit.
pub async fn check_new_member(db: &impl GenericClient, org: Uuid, accepting: Option<Uuid>) -> Result<(), LimitError> {
    let (plan, _, max) = lock_limits(db, org).await?;
    let used: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM memberships WHERE organization_id = $1)
                  + (SELECT count(*) FROM invitations WHERE organization_id = $1 AND accepted_at IS NULL AND expires_at > now()
                       AND id IS DISTINCT FROM $2)",
            &[&org, &accepting],
        )
        .await?
        .get(0);
    if used >= i64::from(max) {
        return Err(LimitError::Members { plan, max, used });
    }
    Ok(())
}
