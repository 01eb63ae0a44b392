//! Which sites may send events. Looked up per beacon, so answers are cached
//! briefly; an unknown site is cached too, so a flood for it stays cheap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use shared::SiteId;

const TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteStatus {
    Active,
    Inactive,
    Unknown,
}

pub struct SiteDirectory {
    pool: Pool,
    cache: Mutex<HashMap<SiteId, (SiteStatus, Instant)>>,
}

impl SiteDirectory {
    pub fn new(pool: Pool) -> Self {
        Self { pool, cache: Mutex::new(HashMap::new()) }
    }

    pub async fn status(&self, site: SiteId) -> Result<SiteStatus, crate::db::DbError> {
        if let Some((status, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&site) {
            if at.elapsed() < TTL {
                return Ok(*status);
            }
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT active AND deleted_at IS NULL FROM sites WHERE id = $1", &[site.as_uuid()])
            .await?;
        let status = match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => SiteStatus::Active,
            Some(false) => SiteStatus::Inactive,
            None => SiteStatus::Unknown,
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(site, (status, Instant::now()));
        Ok(status)
    }
}

/// A site as the dashboard API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Site {
    pub id: uuid::Uuid,
    pub organization_id: uuid::Uuid,
    pub domain: String,
    pub name: String,
    /// IANA time zone; days and time buckets of its stats follow it.
    pub timezone: String,
    pub retention_days: i32,
    pub allowed_hostnames: Vec<String>,
    pub excluded_paths: Vec<String>,
    pub active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Site {
    /// The select list [`Site::from_row`] reads, for a `sites` row aliased `s`.
    pub const COLUMNS: &'static str = "s.id, s.organization_id, s.domain, s.name, s.timezone, s.retention_days, \
                                       s.allowed_hostnames, s.excluded_paths, s.active, s.created_at";

    pub fn from_row(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get("id"),
            organization_id: row.get("organization_id"),
            domain: row.get("domain"),
            name: row.get("name"),
            timezone: row.get("timezone"),
            retention_days: row.get("retention_days"),
            allowed_hostnames: row.get("allowed_hostnames"),
            excluded_paths: row.get("excluded_paths"),
            active: row.get("active"),
            created_at: row.get("created_at"),
        }
    }
}
