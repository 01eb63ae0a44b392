//! Umami: the CSV of `website_event` rows with the session's columns beside
//! them (Umami Cloud's "data export"), and a direct read of Umami's own
//! PostgreSQL database (schema v2 or v3, told apart by its columns). Both
//! are summed per day (UTC, as Umami stores them) by [`aggregate`]: a
//! visitor is Umami's session, a visit its `visit_id` (v2 has none: a
//! session's events more than 30 minutes apart start a new visit).
//!
//! Umami's report export (a zip of `x,y` files) is refused: it is one
//! aggregate over its whole range with no dates and unique counts that do
//! not add up, so no daily row made from it would be exact.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::aggregate::{Hit, aggregate};
use super::{CsvColumns, ImportError, RowSet, capitalise, csv_error, csv_reader, decode_text};

/// A session's events further apart than this are two visits (Umami's own rule).
const VISIT_GAP_MS: i64 = 30 * 60 * 1000;

pub fn parse_file(file: &str, bytes: &[u8]) -> Result<RowSet, ImportError> {
    if bytes.starts_with(b"PK") {
        return Err(ImportError::Archive {
            file: file.to_owned(),
            reason: "this is Umami's report export (x,y files): it has no dates, only totals over its whole range, so it cannot be \
                     imported exactly; export the website_event data (CSV) or import from Umami's database (umami-db)"
                .into(),
        });
    }
    let text = decode_text(file, bytes)?;
    let mut reader = csv_reader(&text);
    let cols = CsvColumns::new(&reader.headers().map_err(|e| csv_error(file, e))?.clone());
    for needed in ["session_id", "created_at", "url_path"] {
        if !cols.has(needed) {
            return Err(ImportError::parse(file, 1, None, format!("no `{needed}` column: is this Umami's website_event export?")));
        }
    }
    let mut events = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let get = |name: &str| cols.get(&record, name).to_owned();
        let created = get("created_at");
        let at = parse_time(&created).ok_or_else(|| {
            ImportError::parse(file, line, cols.column("created_at"), format!("created_at `{created}` is not a date and time"))
        })?;
        let event_type = get("event_type");
        let event_name = match event_type.as_str() {
            "" | "1" => None,
            "2" => Some(get("event_name")),
            other => {
                return Err(ImportError::parse(file, line, cols.column("event_type"), format!("event_type `{other}` is neither 1 nor 2")));
            }
        };
        let region = if cols.has("region") { get("region") } else { get("subdivision1") };
        events.push(Event {
            at,
            session: get("session_id"),
            visit: get("visit_id"),
            event_name,
            hostname: get("hostname"),
            url_path: get("url_path"),
            referrer_domain: get("referrer_domain"),
            utm: [get("utm_source"), get("utm_medium"), get("utm_campaign"), get("utm_content"), get("utm_term")],
            browser: get("browser"),
            os: get("os"),
            device: get("device"),
            country: get("country"),
            region,
            city: get("city"),
        });
    }
    Ok(aggregate(to_hits(events)))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").ok().map(|t| t.to_utc()))
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

/// One Umami event with its session's facts.
#[derive(Debug, Clone)]
struct Event {
    at: DateTime<Utc>,
    session: String,
    visit: String,
    event_name: Option<String>,
    hostname: String,
    url_path: String,
    referrer_domain: String,
    utm: [String; 5],
    browser: String,
    os: String,
    device: String,
    country: String,
    region: String,
    city: String,
}

fn to_hits(mut events: Vec<Event>) -> Vec<Hit> {
    events.sort_by(|a, b| (&a.session, a.at).cmp(&(&b.session, b.at)));
    let mut last: HashMap<String, (i64, usize)> = HashMap::new();
    events
        .into_iter()
        .map(|e| {
            let at_ms = e.at.timestamp_millis();
            let visit = if e.visit.is_empty() {
                // v2: no visit id; a gap of 30 minutes starts the next visit.
                let (prev, n) = last.get(&e.session).copied().unwrap_or((i64::MIN / 2, 0));
                let n = if at_ms - prev > VISIT_GAP_MS { n + 1 } else { n };
                last.insert(e.session.clone(), (at_ms, n));
                format!("gap-{n}")
            } else {
                e.visit.clone()
            };
            let host = e.hostname.strip_prefix("www.").unwrap_or(&e.hostname).to_lowercase();
            let referrer = e.referrer_domain.trim().to_lowercase();
            let referrer = referrer.strip_prefix("www.").unwrap_or(&referrer).to_owned();
            let source = if referrer.is_empty() || referrer == host { String::new() } else { super::ga4::source_name(&referrer) };
            let (os, os_version) = split_os(&e.os);
            let [utm_source, utm_medium, utm_campaign, utm_content, utm_term] = e.utm;
            Hit {
                date: e.at.date_naive(),
                at_ms,
                visitor: e.session,
                visit,
                event_name: e.event_name,
                hostname: host,
                page: e.url_path.split(['?', '#']).next().unwrap_or("").to_owned(),
                link_url: String::new(),
                engagement_ms: 0,
                referrer: if source.is_empty() { String::new() } else { referrer.clone() },
                source,
                utm_source,
                utm_medium,
                utm_campaign,
                utm_content,
                utm_term,
                device: capitalise(&e.device),
                browser: browser_name(&e.browser),
                browser_version: String::new(),
                os,
                os_version,
                country: e.country.trim().to_uppercase(),
                region: e.region,
                city: e.city,
            }
        })
        .collect()
}

/// Umami's browser names (its detect-browser ids) as people write them.
fn browser_name(b: &str) -> String {
    match b.trim() {
        "chrome" | "crios" | "chromium-webview" => "Chrome".into(),
        "firefox" | "fxios" => "Firefox".into(),
        "safari" | "ios" | "ios-webview" => "Safari".into(),
        "edge" | "edge-chromium" | "edge-ios" => "Microsoft Edge".into(),
        "opera" | "opera-mini" => "Opera".into(),
        "samsung" => "Samsung Internet".into(),
        "yandexbrowser" => "Yandex Browser".into(),
        "facebook" | "instagram" => "Mobile App".into(),
        other => capitalise(other),
    }
}

/// `Windows 10` → (Windows, 10); `Mac OS` → Mac; `Android OS` → Android.
fn split_os(os: &str) -> (String, String) {
    let os = os.trim();
    match os {
        "Mac OS" => return ("Mac".into(), String::new()),
        "Android OS" => return ("Android".into(), String::new()),
        "Linux" => return ("GNU/Linux".into(), String::new()),
        "Chrome OS" => return ("Chrome OS".into(), String::new()),
        _ => {}
    }
    match os.strip_prefix("Windows ") {
        Some(v) => ("Windows".into(), v.to_owned()),
        None => (os.to_owned(), String::new()),
    }
}

/// Reads a website's events from Umami's PostgreSQL database (a read-only
/// transaction) between two days, both included.
pub async fn read_database(
    url: &str,
    website_id: uuid::Uuid,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<RowSet, ImportError> {
    let db_error = |e: &dyn std::fmt::Display| ImportError::Database(e.to_string());
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| ImportError::Invalid(format!("not a PostgreSQL URL: {e}")))?;
    // A host that never answers must not hold the request for minutes.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let pool = crate::adapters::postgres::pool_from_config(config, 1).map_err(|e| db_error(&e))?;
    let mut client = pool.get().await.map_err(|e| db_error(&e))?;
    let tx = client.build_transaction().read_only(true).start().await.map_err(|e| db_error(&e))?;
    tx.batch_execute("SET LOCAL statement_timeout = '300s'").await.map_err(|e| db_error(&e))?;
    let columns: Vec<(String, String)> = tx
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name IN ('website_event', 'session')",
            &[],
        )
        .await
        .map_err(|e| db_error(&e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let has = |t: &str, c: &str| columns.iter().any(|(tt, cc)| tt == t && cc == c);
    if !has("website_event", "session_id") || !has("session", "session_id") {
        return Err(ImportError::Database("no website_event and session tables here: is this Umami's database?".into()));
    }
    // v3 has visit_id, utm_* and hostname on the event and region on the session; v2 has none of them.
    let v3 = has("website_event", "visit_id");
    let ev = |c: &str| if has("website_event", c) { format!("coalesce(e.{c}::text, '')") } else { "''".to_owned() };
    let region = if has("session", "region") {
        "coalesce(s.region, '')"
    } else if has("session", "subdivision1") {
        "coalesce(s.subdivision1, '')"
    } else {
        "''"
    };
    let hostname = if has("website_event", "hostname") {
        "coalesce(e.hostname, '')".to_owned()
    } else if has("session", "hostname") {
        "coalesce(s.hostname, '')".to_owned()
    } else {
        "''".to_owned()
    };
    let sql = format!(
        "SELECT e.created_at, e.session_id::text, {visit}, e.event_type, coalesce(e.event_name, ''), {hostname}, coalesce(e.url_path, ''),
                coalesce(e.referrer_domain, ''), {us}, {um}, {uc}, {ucon}, {ut},
                coalesce(s.browser, ''), coalesce(s.os, ''), coalesce(s.device, ''), coalesce(s.country, ''), {region}, coalesce(s.city, '')
         FROM website_event e JOIN session s ON s.session_id = e.session_id
         WHERE e.website_id = $1 AND e.created_at >= $2::date::timestamp AT TIME ZONE 'UTC' AND e.created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC'",
        visit = if v3 { "coalesce(e.visit_id::text, '')".to_owned() } else { "''".to_owned() },
        us = ev("utm_source"),
        um = ev("utm_medium"),
        uc = ev("utm_campaign"),
        ucon = ev("utm_content"),
        ut = ev("utm_term"),
    );
    let rows = tx.query(&sql, &[&website_id, &from, &to]).await.map_err(|e| db_error(&e))?;
    let _ = tx.rollback().await;
    let events = rows
        .iter()
        .map(|r| Event {
            at: r.get(0),
            session: r.get(1),
            visit: r.get(2),
            event_name: if r.get::<_, i32>(3) == 2 { Some(r.get(4)) } else { None },
            hostname: r.get(5),
            url_path: r.get(6),
            referrer_domain: r.get(7),
            utm: [r.get(8), r.get(9), r.get(10), r.get(11), r.get(12)],
            browser: r.get(13),
            os: r.get(14),
            device: r.get(15),
            country: r.get(16),
            region: r.get(17),
            city: r.get(18),
        })
        .collect();
    let mut set = aggregate(to_hits(events));
    set.declare_range(from, to);
    if !v3 {
        set.warn("Umami v2 schema: visits are split on 30-minute gaps (v2 has no visit_id)".into());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imports::Table;

    const EXPORT: &str = "event_id,website_id,session_id,visit_id,created_at,url_path,url_query,referrer_path,referrer_query,referrer_domain,page_title,event_type,event_name,hostname,browser,os,device,screen,language,country,region,city
e1,w,s1,v1,2024-03-01 10:00:00,/,,,,www.google.com,Home,1,,example.com,chrome,Windows 10,desktop,1920x1080,en-US,DE,DE-BE,Berlin
e2,w,s1,v1,2024-03-01 10:02:00,/pricing,?a=1,,,,Pricing,1,,example.com,chrome,Windows 10,desktop,1920x1080,en-US,DE,DE-BE,Berlin
e3,w,s1,v1,2024-03-01 10:03:00,/pricing,,,,,Pricing,2,signup,example.com,chrome,Windows 10,desktop,1920x1080,en-US,DE,DE-BE,Berlin
e4,w,s2,v2,2024-03-02T23:59:00.000Z,/blog,,,,example.com,\"Blog, all\",1,,example.com,ios,iOS,mobile,390x844,fr-FR,FR,,
";

    #[test]
    fn the_event_export_sums_per_day() {
        let set = parse_file("umami.csv", EXPORT.as_bytes()).unwrap();
        assert_eq!(set.total(Table::Visitors, "visitors"), 2);
        assert_eq!(set.total(Table::Visitors, "pageviews"), 3);
        assert_eq!(set.total(Table::Visitors, "bounces"), 1);
        assert_eq!(set.total(Table::Visitors, "visit_duration"), 180);
        assert_eq!(set.total(Table::CustomEvents, "events"), 1);
        let sources: Vec<String> = set.rows().filter(|r| r.table == Table::Sources).map(|r| r.dims[0].clone()).collect();
        assert_eq!(sources, vec!["Google".to_owned(), String::new()], "a referrer of the site itself is no source (rows in day order)");
        let os: Vec<Vec<String>> = set.rows().filter(|r| r.table == Table::OperatingSystems).map(|r| r.dims).collect();
        assert!(os.contains(&vec!["Windows".to_owned(), "10".to_owned()]), "{os:?}");
        assert_eq!(set.data_range().map(|r| r.1.to_string()), Some("2024-03-02".into()));
    }

    #[test]
    fn bad_rows_and_report_zips_are_refused_with_reasons() {
        let bad = EXPORT.replace("2024-03-01 10:02:00", "yesterday");
        assert_eq!(
            parse_file("umami.csv", bad.as_bytes()).unwrap_err().to_string(),
            "umami.csv, line 3, column 5: created_at `yesterday` is not a date and time"
        );
        assert!(parse_file("umami.zip", b"PK\x03\x04...").unwrap_err().to_string().contains("report export"));
        assert!(parse_file("x.csv", b"x,y\n/,3\n").unwrap_err().to_string().contains("no `session_id` column"));
    }

    #[test]
    fn v2_sessions_split_into_visits_on_a_half_hour_gap() {
        let csv = "session_id,created_at,url_path,event_type\ns,2024-03-01 10:00:00,/,1\ns,2024-03-01 10:20:00,/a,1\ns,2024-03-01 11:00:00,/b,1\n";
        let set = parse_file("v2.csv", csv.as_bytes()).unwrap();
        assert_eq!(set.total(Table::Visitors, "visits"), 2);
        assert_eq!(set.total(Table::Visitors, "visitors"), 1);
    }
}
