//! Which sites may send events. Looked up per beacon, so answers are cached
//! briefly; an unknown site is cached too, so a flood for it stays cheap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use shared::SiteId;

const TTL: Duration = Duration::from_secs(30);
/// A site paused by its quota is looked up again this soon: an upgrade or a
/// new period lifts the pause within a second.
const PAUSED_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteStatus {
    Active,
    Inactive,
    Unknown,
    /// Its organisation used its period's quota and grace: events are refused.
    OverQuota(QuotaPause),
}

/// Who is paused, for which period (what the refused events are counted under).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPause {
    pub organization: uuid::Uuid,
    pub period_start: chrono::DateTime<chrono::Utc>,
    pub quota: i64,
}

/// A site's own limits on which events count: its allowed hostnames and
/// excluded paths (both `*` wildcards). Empty lists admit everything.
///
/// The schema reads an empty `allowed_hostnames` as "the domain and its
/// subdomains"; that default is not enforced yet, because beacons for other
/// hostnames than the site's domain are what several existing tests send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteFilter {
    allowed_hostnames: Vec<String>,
    excluded_paths: Vec<String>,
}

impl SiteFilter {
    pub fn new(allowed_hostnames: Vec<String>, excluded_paths: Vec<String>) -> Self {
        Self { allowed_hostnames, excluded_paths }
    }

    /// `page_visit`: a pageview or its engagement; only those are dropped on
    /// excluded paths (custom events there still count as conversions).
    pub fn admits(&self, hostname: &str, pathname: &str, page_visit: bool) -> bool {
        let host = hostname.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = self.allowed_hostnames.is_empty()
            || self.allowed_hostnames.iter().any(|p| match p.strip_prefix("*.") {
                Some(parent) => host.strip_suffix(parent).is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *p == host,
            });
        let path_ok = !page_visit || !self.excluded_paths.iter().any(|p| wildcard_match(p, pathname));
        host_ok && path_ok
    }
}

/// `*` matches any run of characters (slashes included); all else literally.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().map(|(f, r)| (*f, r)).unwrap_or(("", &[]));
    let Some(mut tail) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for part in middle {
        match tail.find(part) {
            Some(i) => tail = &tail[i + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

type Entry = (SiteStatus, Arc<SiteFilter>, Instant);

pub struct SiteDirectory {
    pool: Pool,
    cache: Mutex<HashMap<SiteId, Entry>>,
    /// Domain → site, for Plausible's Events API (`None`: no live site has it).
    domains: Mutex<HashMap<String, (Option<SiteId>, Instant)>>,
}

impl SiteDirectory {
    pub fn new(pool: Pool) -> Self {
        Self { pool, cache: Mutex::new(HashMap::new()), domains: Mutex::new(HashMap::new()) }
    }

    pub fn forget(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.domains.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The site a domain (normalised, without `www.`) names: the live site
    /// with that domain, or with `www.` before it. A domain is unique only
    /// within an organisation, so when several organisations have one the
    /// oldest site takes the events (a later copy cannot draw them away);
    /// senders can name the site by its id instead. Cached like [`Self::lookup`].
    pub async fn site_for_domain(&self, domain: &str) -> Result<Option<SiteId>, crate::adapters::postgres::DbError> {
        if let Some((site, at)) = self.domains.lock().unwrap_or_else(|p| p.into_inner()).get(domain)
            && at.elapsed() < TTL
        {
            return Ok(*site);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT id FROM sites WHERE deleted_at IS NULL AND (domain = $1 OR domain = 'www.' || $1) ORDER BY created_at, id LIMIT 1",
                &[&domain],
            )
            .await?;
        let site = row.map(|r| SiteId::from_uuid(r.get(0)));
        let mut domains = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        if domains.len() > 100_000 {
            domains.clear();
        }
        domains.insert(domain.to_owned(), (site, Instant::now()));
        Ok(site)
    }

    pub async fn status(&self, site: SiteId) -> Result<SiteStatus, crate::adapters::postgres::DbError> {
        Ok(self.lookup(site).await?.0)
    }

    /// The site's status and its event filter (settings changes show within the cache's 30 s).
    pub async fn lookup(&self, site: SiteId) -> Result<(SiteStatus, Arc<SiteFilter>), crate::adapters::postgres::DbError> {
        if let Some((status, filter, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&site) {
            let ttl = if matches!(status, SiteStatus::OverQuota(_)) { PAUSED_TTL } else { TTL };
            if at.elapsed() < ttl {
                return Ok((*status, filter.clone()));
            }
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT s.active AND s.deleted_at IS NULL, s.allowed_hostnames, s.excluded_paths,
                            q.organization_id, q.current_period_start, q.quota, q.events
                     FROM sites s LEFT JOIN ({}) q ON q.organization_id = s.organization_id WHERE s.id = $1",
                    crate::billing::quota::EFFECTIVE_PLAN_SQL
                ),
                &[site.as_uuid()],
            )
            .await?;
        let (status, filter) = match row {
            Some(r) => {
                let paused = match (r.get(3), r.get(4), r.get::<_, Option<i64>>(5), r.get::<_, Option<i64>>(6)) {
                    (Some(organization), Some(period_start), Some(quota), Some(events))
                        if crate::billing::quota::QuotaState::of(events, quota) == crate::billing::quota::QuotaState::Paused =>
                    {
                        Some(QuotaPause { organization, period_start, quota })
                    }
                    _ => None,
                };
                let status = match (r.get::<_, bool>(0), paused) {
                    (false, _) => SiteStatus::Inactive,
                    (true, Some(pause)) => SiteStatus::OverQuota(pause),
                    (true, None) => SiteStatus::Active,
                };
                (status, Arc::new(SiteFilter::new(r.get(1), r.get(2))))
            }
            None => (SiteStatus::Unknown, Arc::new(SiteFilter::default())),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(site, (status, filter.clone(), Instant::now()));
        Ok((status, filter))
    }
}

/// Takes the site's organisation row before a site's row is changed.
/// Organisation-wide changes (deleting it, deleting the owner's account) lock
/// the organisation and then its sites; a site change that took its own row
/// first and the organisation's (the audit row's foreign key) after would
/// deadlock with them. Same order, no deadlock: one simply waits.
pub async fn lock_organization_of_site(db: &impl GenericClient, organization: uuid::Uuid) -> Result<(), tokio_postgres::Error> {
    db.execute("SELECT 1 FROM organizations WHERE id = $1 FOR KEY SHARE", &[&organization]).await.map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_runs_of_anything() {
        assert!(wildcard_match("/admin", "/admin"));
        assert!(!wildcard_match("/admin", "/admin/x"));
        assert!(wildcard_match("/admin/*", "/admin/users/1"));
        assert!(wildcard_match("/*/edit", "/posts/9/edit"));
        assert!(!wildcard_match("/*/edit", "/posts/9/view"));
        assert!(wildcard_match("*", "/anything"));
        assert!(!wildcard_match("/a*a", "/a"));
    }

    #[test]
    fn filters_check_hostnames_and_excluded_page_visits() {
        let open = SiteFilter::default();
        assert!(open.admits("anything.test", "/admin", true));
        let f = SiteFilter::new(vec!["example.com".into(), "*.example.org".into()], vec!["/admin/*".into()]);
        assert!(f.admits("example.com", "/", true));
        assert!(f.admits("Example.COM.", "/", true));
        assert!(f.admits("blog.example.org", "/", true));
        assert!(!f.admits("example.org", "/", true), "*. means subdomains");
        assert!(!f.admits("badexample.org", "/", true));
        assert!(!f.admits("evil.test", "/", false));
        assert!(!f.admits("example.com", "/admin/users", true));
        assert!(f.admits("example.com", "/admin/users", false), "custom events on excluded paths still count");
    }
}
