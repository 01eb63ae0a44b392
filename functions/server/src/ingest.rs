//! The ingest path: beacon → checks → anonymised event → stored exactly once.
//!
//! [`Ingest::accept`] is what `POST /api/e` runs; [`Ingest::prepare`] and
//! [`EventStore::write`] are its two halves, used apart by `seed-demo`.

use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use shared::beacon::{BeaconError, EventKind};
use shared::batch::Batch;
use shared::bots::{BotReason, RequestSignals};
use shared::{AnonymisedEvent, Beacon, EventId, EventType, Pipeline, Salt, SiteId, Visit};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::billing::quota::QuotaDrops;
use crate::field_cipher::{CipherError, FieldCipher};
use crate::beacon_rate::SiteBeaconRate;
use crate::group_commit::{GroupCommitter, QUEUE_CAPACITY};
use crate::salt::{SaltError, SaltStore};
use crate::sites::{SiteDirectory, SiteFilter, SiteStatus};
use crate::visitor_requests::{LookupKey, NormalisedEmail};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Beacon(#[from] BeaconError),
    #[error("unknown site {0}")]
    UnknownSite(SiteId),
    #[error("site {0} is not accepting events")]
    InactiveSite(SiteId),
    #[error(
        "the organisation of site {site} has used its event quota for this period ({quota} events, and {grace} % grace); \
         events are not stored until the plan is upgraded or the next period starts",
        grace = crate::billing::quota::GRACE_PERCENT
    )]
    OverQuota { site: SiteId, quota: i64 },
    #[error("site {site} is sending more than {per_second} beacons a second; slow down")]
    RateLimited { site: SiteId, per_second: std::num::NonZeroU32 },
    /// Nothing was committed; the sender should retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<SaltError> for IngestError {
    fn from(e: SaltError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::adapters::postgres::DbError> for IngestError {
    fn from(e: crate::adapters::postgres::DbError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

pub struct Ingest {
    pipeline: Arc<Pipeline>,
    sites: SiteDirectory,
    salts: Arc<dyn SaltStore>,
    store: Arc<EventStore>,
    committer: GroupCommitter,
    drops: Arc<QuotaDrops>,
    /// None: beacons are not rate-limited.
    beacon_rate: Option<SiteBeaconRate>,
}

/// What happened to an accepted beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Stored(EventId),
    /// Dropped on purpose; the sender still gets a 2xx (bots learn nothing).
    Bot(BotReason),
    /// Dropped by the site's allowed hostnames or excluded paths; a 2xx too.
    Filtered,
}

/// The outcome of a signed batch from the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchOutcome {
    /// Events stored by this request.
    pub stored: u64,
    /// Events already stored by an earlier delivery of the same ids.
    pub duplicates: u64,
    /// Events for unknown or inactive sites, not stored.
    pub rejected: u64,
    /// Events of organisations past their quota and grace: not stored, counted as dropped.
    pub over_quota: u64,
}

impl Ingest {
    /// `queue`: events the group commit holds at most ([`QUEUE_CAPACITY`] when `None`).
    pub fn new(
        pool: Pool,
        pipeline: Arc<Pipeline>,
        salts: Arc<dyn SaltStore>,
        cipher: Arc<FieldCipher>,
        lookup: Arc<LookupKey>,
        beacon_rate: Option<std::num::NonZeroU32>,
        queue: Option<NonZeroUsize>,
    ) -> Self {
        let store = Arc::new(EventStore { pool: pool.clone(), cipher, lookup });
        let capacity = queue.unwrap_or(QUEUE_CAPACITY);
        let committer = GroupCommitter::start(store.clone(), capacity);
        let drops = Arc::new(QuotaDrops::default());
        spawn_drop_flush(drops.clone(), pool.clone());
        Self { pipeline, sites: SiteDirectory::new(pool), salts, store, committer, drops, beacon_rate: beacon_rate.map(SiteBeaconRate::new) }
    }

    /// Drops the cached site answers (after the quota job found a pause).
    pub fn forget_sites(&self) {
        self.sites.forget();
    }

    /// Events refused for a used-up quota, not yet written to `quota_drops`.
    pub fn quota_drops(&self) -> &QuotaDrops {
        &self.drops
    }

    /// The site a domain names, for senders that know no site id (see
    /// [`SiteDirectory::site_for_domain`]).
    pub async fn site_for_domain(&self, domain: &str) -> Result<Option<SiteId>, IngestError> {
        Ok(self.sites.site_for_domain(domain).await?)
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Beacons waiting for their group commit.
    pub fn queue_depth(&self) -> usize {
        self.committer.queue_depth()
    }

    pub fn salts(&self) -> &Arc<dyn SaltStore> {
        &self.salts
    }

    /// One beacon, received now: stored once it returns `Ok(Stored)`.
    pub async fn accept(&self, body: &[u8], visit: Visit<'_>, now: DateTime<Utc>) -> Result<Accepted, IngestError> {
        self.accept_request(body, visit, &RequestSignals::default(), now).await
    }

    /// [`Ingest::accept`] for a browser's request: its other headers count
    /// for the bot rules and the Client Hints name the browser.
    pub async fn accept_request(
        &self,
        body: &[u8],
        visit: Visit<'_>,
        signals: &RequestSignals<'_>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, IngestError> {
        self.accept_beacon(Beacon::parse(body)?, visit, signals, now).await
    }

    /// A beacon already parsed (from another wire format: Plausible's Events
    /// API), with every check and step of [`Ingest::accept_request`].
    pub async fn accept_beacon(
        &self,
        beacon: Beacon,
        visit: Visit<'_>,
        signals: &RequestSignals<'_>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, IngestError> {
        if !self.check_site(beacon.site).await?.admits(beacon.page.host_str().unwrap_or_default(), beacon.page.path(), is_page_visit(&beacon)) {
            return Ok(Accepted::Filtered);
        }
        if let Some(rate) = &self.beacon_rate
            && !rate.admit(beacon.site)
        {
            return Err(IngestError::RateLimited { site: beacon.site, per_second: rate.per_second() });
        }
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
        if let Some(reason) = self.pipeline.screen(&beacon, visit, signals, now_ms) {
            return Ok(Accepted::Bot(reason));
        }
        let id = EventId::new(now, rand::random());
        let salt = self.salts.salt_for(id.timestamp().date_naive(), now).await?;
        let event = self.pipeline.anonymise_with(beacon, visit, signals, &salt, id);
        self.committer.commit(event).await.map_err(|e| IngestError::Unavailable(e.to_string()))?;
        Ok(Accepted::Stored(id))
    }

    /// Parse, check and anonymise with a given salt, without storing.
    /// `None` when the visit is a bot or the site's settings drop it.
    pub async fn prepare(&self, body: &[u8], visit: Visit<'_>, id: EventId, salt: &Salt) -> Result<Option<AnonymisedEvent>, IngestError> {
        let beacon = Beacon::parse(body)?;
        let filter = self.check_site(beacon.site).await?;
        if !filter.admits(beacon.page.host_str().unwrap_or_default(), beacon.page.path(), is_page_visit(&beacon)) || self.pipeline.bot(&beacon, visit).is_some() {
            return Ok(None);
        }
        Ok(Some(self.pipeline.anonymise(beacon, visit, salt, id)))
    }

    /// A batch the edge already anonymised (its signature checked by the
    /// caller): events of active sites that their settings admit are stored, once.
    pub async fn accept_batch(&self, batch: Batch) -> Result<BatchOutcome, IngestError> {
        let mut outcome = BatchOutcome::default();
        let mut keep = Vec::with_capacity(batch.events.len());
        for event in batch.events {
            let page_visit = matches!(event.event_type, EventType::Pageview | EventType::Engagement);
            match self.sites.lookup(event.site).await? {
                (SiteStatus::Active, filter) if filter.admits(&event.hostname, &event.pathname, page_visit) => keep.push(event),
                (SiteStatus::OverQuota(pause), _) => {
                    self.drops.count(pause.organization, pause.period_start, 1);
                    outcome.over_quota += 1;
                }
                _ => outcome.rejected += 1,
            }
        }
        outcome.stored = self.store.write(&keep).await?;
        outcome.duplicates = keep.len() as u64 - outcome.stored;
        self.mark_late_days(&keep).await?;
        Ok(outcome)
    }

    /// Events for a day before today make that day's rollup stale.
    async fn mark_late_days(&self, events: &[AnonymisedEvent]) -> Result<(), IngestError> {
        let today = Utc::now().date_naive();
        let mut late: Vec<(uuid::Uuid, chrono::NaiveDate)> = events
            .iter()
            .map(|e| (*e.site.as_uuid(), e.timestamp().date_naive()))
            .filter(|(_, day)| *day < today)
            .collect();
        if late.is_empty() {
            return Ok(());
        }
        late.sort();
        late.dedup();
        let client = self.store.pool.get().await.map_err(|e| IngestError::Unavailable(e.to_string()))?;
        for (site, day) in late {
            client
                .execute("INSERT INTO rollup_dirty (site_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&site, &day])
                .await
                .map_err(|e| IngestError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    async fn check_site(&self, site: SiteId) -> Result<Arc<SiteFilter>, IngestError> {
        match self.sites.lookup(site).await? {
            (SiteStatus::Active, filter) => Ok(filter),
            (SiteStatus::Inactive, _) => Err(IngestError::InactiveSite(site)),
            (SiteStatus::Unknown, _) => Err(IngestError::UnknownSite(site)),
            (SiteStatus::OverQuota(pause), _) => {
                self.drops.count(pause.organization, pause.period_start, 1);
                Err(IngestError::OverQuota { site, quota: pause.quota })
            }
        }
    }
}

/// Writes the drop counts about once a second while the process lives (a
/// Lambda's timers run while it is thawed; what is left goes on the next).
fn spawn_drop_flush(drops: Arc<QuotaDrops>, pool: Pool) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let drops = Arc::downgrade(&drops);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            // The ingest is gone: so is the counter.
            let Some(drops) = drops.upgrade() else { return };
            if drops.pending() > 0
                && let Err(e) = drops.flush(&pool).await
            {
                tracing::warn!(error = %e, "writing the quota drop counts failed; they are kept for the next try");
            }
        }
    });
}

/// A pageview or the engagement that follows it: what excluded paths drop.
fn is_page_visit(beacon: &Beacon) -> bool {
    matches!(beacon.kind, EventKind::Pageview { .. } | EventKind::Engagement { .. })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot encrypt a sensitive field: {0}")]
    Cipher(#[from] CipherError),
}

pub struct EventStore {
    pool: Pool,
    cipher: Arc<FieldCipher>,
    /// Keys identify() emails into `email_key`, so visitor requests can find them.
    lookup: Arc<LookupKey>,
}

/// The columns the pipeline fills, in COPY order.
const COLUMNS: &[(&str, Type)] = &[
    ("id", Type::UUID),
    ("site_id", Type::UUID),
    ("ts", Type::TIMESTAMPTZ),
    ("event_type", Type::TEXT),
    ("name", Type::TEXT),
    ("visitor_hash", Type::INT8),
    ("session_hash", Type::INT8),
    ("hostname", Type::TEXT),
    ("pathname", Type::TEXT),
    ("referrer", Type::TEXT),
    ("referrer_host", Type::TEXT),
    ("utm_source", Type::TEXT),
    ("utm_medium", Type::TEXT),
    ("utm_campaign", Type::TEXT),
    ("utm_term", Type::TEXT),
    ("utm_content", Type::TEXT),
    ("screen_width", Type::INT4),
    ("screen_height", Type::INT4),
    ("engaged_ms", Type::INT4),
    ("scroll_depth", Type::INT2),
    ("revenue_minor", Type::INT8),
    ("revenue_currency", Type::TEXT),
    ("order_id", Type::TEXT),
    ("target", Type::TEXT),
    ("user_id", Type::TEXT),
    ("props", Type::JSONB),
    ("sensitive", Type::BYTEA),
    ("browser", Type::TEXT),
    ("browser_version", Type::TEXT),
    ("os", Type::TEXT),
    ("os_version", Type::TEXT),
    ("device", Type::TEXT),
    ("referrer_source", Type::TEXT),
    ("channel", Type::TEXT),
    ("country", Type::TEXT),
    ("region", Type::TEXT),
    ("city", Type::TEXT),
    ("email_key", Type::BYTEA),
];

impl EventStore {
    /// Stores a batch in one transaction: binary COPY into a per-connection
    /// staging table, then one insert that skips ids already stored. Returns
    /// how many events were new. Either all are durable or none are.
    pub async fn write(&self, events: &[AnonymisedEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let sealed = events.iter().map(|e| self.seal_sensitive(e)).collect::<Result<Vec<_>, _>>()?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .await?;
        let names = COLUMNS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let types = COLUMNS.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
        let sink = tx.copy_in(&format!("COPY events_staging ({names}) FROM STDIN BINARY")).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
        for (e, sensitive) in events.iter().zip(&sealed) {
            // Only identify events carry an email; the rest pay one check.
            let email_key = e.sensitive.email.as_ref().and_then(|email| self.lookup.email_key(&NormalisedEmail::new(email.expose())));
            let row = EventRow::from_event(e, sensitive.as_deref(), email_key);
            writer.as_mut().write(&row.values()).await?;
        }
        writer.finish().await?;
        let inserted = tx
            .execute(&format!("INSERT INTO events ({names}) SELECT {names} FROM events_staging ON CONFLICT DO NOTHING"), &[])
            .await?;
        tx.commit().await?;
        Ok(inserted)
    }

    fn seal_sensitive(&self, e: &AnonymisedEvent) -> Result<Option<Vec<u8>>, CipherError> {
        if e.sensitive.is_empty() {
            return Ok(None);
        }
        let plain: serde_json::Map<String, serde_json::Value> =
            e.sensitive.entries().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let plain = serde_json::to_vec(&plain).unwrap_or_default();
        self.cipher.encrypt(&plain, e.id.as_uuid().as_bytes()).map(Some)
    }
}

/// Owned SQL values of one event, so the COPY row can borrow them.
struct EventRow<'a> {
    e: &'a AnonymisedEvent,
    event_type: &'static str,
    ts: DateTime<Utc>,
    visitor: i64,
    session: i64,
    revenue_minor: Option<i64>,
    revenue_currency: Option<&'static str>,
    props: serde_json::Value,
    sensitive: Option<&'a [u8]>,
    email_key: Option<Vec<u8>>,
}

impl<'a> EventRow<'a> {
    fn from_event(e: &'a AnonymisedEvent, sensitive: Option<&'a [u8]>, email_key: Option<Vec<u8>>) -> Self {
        Self {
            e,
            event_type: e.event_type.as_str(),
            ts: e.timestamp(),
            visitor: e.visitor.as_i64(),
            session: e.session.as_i64(),
            revenue_minor: e.revenue.map(|m| m.minor),
            revenue_currency: e.revenue.map(|m| m.currency.code()),
            props: serde_json::to_value(&e.props).unwrap_or_default(),
            sensitive,
            email_key,
        }
    }

    fn values(&self) -> [&(dyn ToSql + Sync); 38] {
        let e = self.e;
        let en = &e.enrichment;
        [
            e.id.as_uuid(),
            e.site.as_uuid(),
            &self.ts,
            &self.event_type,
            &e.name,
            &self.visitor,
            &self.session,
            &e.hostname,
            &e.pathname,
            &e.referrer,
            &e.referrer_host,
            &e.utm.source,
            &e.utm.medium,
            &e.utm.campaign,
            &e.utm.term,
            &e.utm.content,
            &e.screen_width,
            &e.screen_height,
            &e.engaged_ms,
            &e.scroll_depth,
            &self.revenue_minor,
            &self.revenue_currency,
            &e.order_id,
            &e.target,
            &e.user_id,
            &self.props,
            &self.sensitive,
            &en.browser,
            &en.browser_version,
            &en.os,
            &en.os_version,
            &en.device,
            &en.source,
            &en.channel,
            &en.country,
            &en.region,
            &en.city,
            &self.email_key,
        ]
    }
}
