//! The SQL of visitor requests. Each request runs in one transaction: the
//! visitor's events are collected once into a temporary table (by the
//! indexes of V11), then counted, read or deleted, and the audit row is
//! written in the same transaction.

use chrono::{NaiveDate, Utc};
use deadpool_postgres::{Pool, Transaction};
use shared::SiteId;
use tokio_postgres::types::ToSql;

use super::{Erased, Exported, Found, KeyKind, LookupKey, VisitorKey, VisitorRequest, VisitorRequestError};
use crate::audit::{self, Action};
use crate::field_cipher::FieldCipher;

/// Fills `vr_matched (ts, id, session_hash)` with the visitor's events (see
/// the module comment of [`super`] for which those are).
async fn collect(tx: &Transaction<'_>, lookup: &LookupKey, site: SiteId, key: &VisitorKey) -> Result<(), VisitorRequestError> {
    let site_id = *site.as_uuid();
    let email_key;
    let hash;
    // Identify matches widen to their sessions, never to their visitor hash
    // (a memory-mode daily hash is shared behind one NAT). There is no index
    // on session_hash (it would cost every event, README "Visitor requests"):
    // a session's events are found among those sharing an identify event's
    // storage-mode visitor hash (a tab of any length; V11's partial index
    // holds only those, `visitor_hash & 1 = 1`) and among the events of the
    // identify's UTC day and the days either side, read through the primary
    // key (a memory-mode session, one page load, and one whose hash changed
    // mid-session: a new address, midnight UTC).
    let sessions_of = |column: &str| {
        format!(
            "WITH anchors AS (SELECT ts, visitor_hash, session_hash FROM events WHERE site_id = $1 AND {column} = $2),
                  days AS (SELECT DISTINCT date_trunc('day', ts AT TIME ZONE 'UTC') AS d FROM anchors)
             SELECT e.ts, e.id, e.session_hash FROM events e
             WHERE e.site_id = $1 AND e.visitor_hash & 1 = 1
               AND e.visitor_hash IN (SELECT visitor_hash FROM anchors WHERE visitor_hash & 1 = 1)
               AND e.session_hash IN (SELECT session_hash FROM anchors)
             UNION
             -- LATERAL, so each day is a primary-key range (a plain join let
             -- the planner read all of the site's events).
             SELECT w.ts, w.id, w.session_hash FROM days CROSS JOIN LATERAL (
                 SELECT e.ts, e.id, e.session_hash FROM events e
                 WHERE e.site_id = $1 AND e.ts >= ((days.d - interval '1 day') AT TIME ZONE 'UTC') AND e.ts < ((days.d + interval '2 days') AT TIME ZONE 'UTC')
                   AND e.session_hash IN (SELECT session_hash FROM anchors)) w"
        )
    };
    let (select, value): (String, &(dyn ToSql + Sync)) = match key {
        VisitorKey::UserId(id) => (sessions_of("user_id"), id),
        VisitorKey::Email(email) => {
            email_key = lookup.email_key(email).ok_or(VisitorRequestError::NoLookupKey)?;
            (sessions_of("email_key"), &email_key)
        }
        VisitorKey::StorageVisitorId(vid) => {
            hash = VisitorKey::visitor_hash(site, vid).as_i64();
            ("SELECT e.ts, e.id, e.session_hash FROM events e WHERE e.site_id = $1 AND e.visitor_hash = $2 AND e.visitor_hash & 1 = 1"
                .to_owned(), &hash)
        }
    };
    tx.execute(&format!("CREATE TEMP TABLE vr_matched ON COMMIT DROP AS {select}"), &[&site_id, value]).await?;
    Ok(())
}

async fn counts(tx: &Transaction<'_>, kind: KeyKind) -> Result<Found, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT count(*), count(DISTINCT session_hash), count(DISTINCT (ts AT TIME ZONE 'UTC')::date), min(ts), max(ts) FROM vr_matched",
            &[],
        )
        .await?;
    Ok(Found { key_kind: kind, events: row.get(0), sessions: row.get(1), days: row.get(2), first_seen: row.get(3), last_seen: row.get(4) })
}

/// The audit row: the key's kind and a keyed digest of it, never the key.
async fn record(
    tx: &Transaction<'_>,
    lookup: &LookupKey,
    r: &VisitorRequest,
    action: Action,
    mut details: serde_json::Value,
) -> Result<(), tokio_postgres::Error> {
    let (site, key) = (r.site, &r.key);
    if let Some(d) = details.as_object_mut() {
        d.insert("site".into(), site.to_string().into());
        d.insert("key_kind".into(), key.kind().as_str().into());
        if let Some(digest) = lookup.audit_digest(site, key) {
            d.insert("key_digest".into(), digest.into());
        }
    }
    audit::record(tx, Some(r.by.organization), Some(r.by.user), action, Some(&r.domain), details).await
}

fn found_details(found: &Found) -> serde_json::Value {
    serde_json::json!({"events": found.events, "sessions": found.sessions, "days": found.days})
}

pub async fn find(pool: &Pool, lookup: &LookupKey, r: &VisitorRequest) -> Result<Found, VisitorRequestError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    collect(&tx, lookup, r.site, &r.key).await?;
    let found = counts(&tx, r.key.kind()).await?;
    record(&tx, lookup, r, Action::VisitorRequestFound, found_details(&found)).await?;
    tx.commit().await?;
    Ok(found)
}

/// Columns an export leaves out: the site (the request names it), the
/// internal hashes (meaningless to the visitor) and the ciphertext, which is
/// given decrypted as `details`.
const NOT_EXPORTED: &str = "- 'site_id' - 'visitor_hash' - 'session_hash' - 'email_key' - 'sensitive'";

pub async fn export(pool: &Pool, lookup: &LookupKey, cipher: &FieldCipher, r: &VisitorRequest) -> Result<Exported, VisitorRequestError> {
    let site = r.site;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    collect(&tx, lookup, site, &r.key).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT to_jsonb(e) {NOT_EXPORTED}, e.id, e.sensitive FROM events e JOIN vr_matched m ON m.ts = e.ts AND m.id = e.id
                 WHERE e.site_id = $1 ORDER BY e.ts, e.id"
            ),
            &[site.as_uuid()],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut event: serde_json::Value = row.get(0);
        let id: uuid::Uuid = row.get(1);
        let sealed: Option<Vec<u8>> = row.get(2);
        if let (Some(sealed), Some(obj)) = (sealed, event.as_object_mut()) {
            // The event id is the associated data the ingest sealed with.
            let details = match cipher.decrypt(&sealed, id.as_bytes()).ok().and_then(|plain| serde_json::from_slice(&plain).ok()) {
                Some(details) => details,
                None => {
                    tracing::warn!(event = %id, "an exported event's encrypted fields do not open (a removed field key?)");
                    serde_json::json!({"unreadable": true})
                }
            };
            obj.insert("details".into(), details);
        }
        events.push(event);
    }
    let details = serde_json::json!({"events": events.len()});
    record(&tx, lookup, r, Action::VisitorRequestExported, details).await?;
    tx.commit().await?;
    Ok(Exported { site_id: *site.as_uuid(), key_kind: r.key.kind(), exported_at: Utc::now(), count: events.len(), events })
}

/// Deletes the events, marks their UTC days stale in the same transaction
/// (so a crash before the rebuild still ends in correct rollups, and stats
/// read those days from raw events meanwhile), then rebuilds each day.
pub async fn erase(pool: &Pool, lookup: &LookupKey, r: &VisitorRequest) -> Result<Erased, VisitorRequestError> {
    let site = r.site;
    let site_id = *site.as_uuid();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    collect(&tx, lookup, site, &r.key).await?;
    let found = counts(&tx, r.key.kind()).await?;
    // Rollups are kept per UTC day whatever the site's time zone (the stats
    // engine turns them into the site's days), so UTC days are what to rebuild.
    let days: Vec<NaiveDate> = tx
        .query("SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day FROM vr_matched ORDER BY day", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        "INSERT INTO rollup_dirty (site_id, day) SELECT $1, unnest($2::date[])
         ON CONFLICT (site_id, day) DO UPDATE SET marked_at = now()",
        &[&site_id, &days],
    )
    .await?;
    tx.execute("DELETE FROM events e USING vr_matched m WHERE e.site_id = $1 AND e.ts = m.ts AND e.id = m.id", &[&site_id]).await?;
    let mut details = found_details(&found);
    details["rerolled_days"] = days.iter().map(NaiveDate::to_string).collect::<Vec<_>>().into();
    record(&tx, lookup, r, Action::VisitorRequestErased, details).await?;
    tx.commit().await?;
    drop(client);

    let (mut rerolled_days, mut pending_days) = (Vec::new(), Vec::new());
    for day in days {
        match crate::rollup::rollup_day(pool, site, day).await {
            Ok(_) => rerolled_days.push(day),
            Err(e) => {
                tracing::warn!(site = %site, %day, error = %e, "rebuilding a rollup after an erase failed; the rollup job will");
                pending_days.push(day);
            }
        }
    }
    Ok(Erased { found, rerolled_days, pending_days })
}
