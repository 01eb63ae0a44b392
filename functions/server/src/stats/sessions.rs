//! The one definition of sessions and of the additive sums every metric is
//! computed from. The rollup job runs it over a day's events (into temporary
//! tables) and stores the sums; the stats engine's raw path runs the very same
//! SQL over any time range (as CTEs) with filters. So "rollup equals raw" holds
//! by construction, and the tests check the storage and merging around it.
//!
//! Definitions:
//! - a session is a visitor's events with no gap longer than
//!   [`SESSION_GAP_MINUTES`], within one UTC day (and one time bucket when the
//!   query buckets by time: a bucket is the query restricted to it);
//! - session facts (entry and exit page, bounce, attribution) come from the
//!   session's events, its first event for attribution;
//! - a bounce is a session with one pageview and no interactive event.

pub const SESSION_GAP_MINUTES: i32 = 30;

/// Event types that make a session interactive (not a bounce), and that count as
/// (goal) events.
pub const INTERACTIVE: &str = "('click','form','download','outbound','mailto','tel','purchase','custom')";

/// Events counted as `events` outside goal breakdowns.
pub const GOAL_TYPE_EVENTS: &str = "ev.event_type IN ('click','form','download','outbound','mailto','tel','purchase','custom')";

/// UTC day of an event: memory-mode visitor hashes never link days, so a day is
/// the unit visitors are counted in.
pub const UTC_DAY: &str = "(e.ts AT TIME ZONE 'UTC')::date";

/// Events of one site in `[start, end)` with `uday`, `bucket` and `session_no`.
/// `site`, `start`, `end` and `bucket` are SQL fragments (placeholders or
/// fixed expressions over `e`), never user text.
pub fn session_events_sql(site: &str, start: &str, end: &str, bucket: &str) -> String {
    session_events_of_sql(site, start, end, bucket, "true")
}

/// The same for the visitor-days `visitor_days` (a condition over `e`) keeps:
/// a visitor-day is kept or dropped whole, so its sessions are the same.
pub fn session_events_of_sql(site: &str, start: &str, end: &str, bucket: &str, visitor_days: &str) -> String {
    format!(
        "SELECT e.*, sum(e.starts) OVER (PARTITION BY e.uday, e.bucket, e.visitor_hash ORDER BY e.ts, e.id ROWS UNBOUNDED PRECEDING) AS session_no
         FROM (SELECT e.*, {UTC_DAY} AS uday, {bucket} AS bucket,
                      CASE WHEN e.ts - lag(e.ts) OVER (PARTITION BY {UTC_DAY}, {bucket}, e.visitor_hash ORDER BY e.ts, e.id)
                                <= interval '{SESSION_GAP_MINUTES} minutes'
                           THEN 0 ELSE 1 END AS starts
               FROM events e WHERE e.site_id = {site} AND e.ts >= {start} AND e.ts < {end} AND ({visitor_days})) e"
    )
}

/// One row per session of the events relation `ev`: its facts and its first
/// event's attribution.
pub fn sessions_sql(ev: &str) -> String {
    let first = |col: &str| format!("(array_agg({col} ORDER BY ts, id))[1] AS {col}");
    let attribution = [
        "channel", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "country", "region", "city", "browser",
        "browser_version", "os", "os_version", "device",
    ]
    .map(first)
    .join(",\n            ");
    format!(
        "SELECT uday, bucket, visitor_hash, session_no,
            count(*) FILTER (WHERE event_type = 'pageview') = 1 AND NOT bool_or(event_type IN {INTERACTIVE}) AS bounced,
            (array_agg(pathname ORDER BY ts, id) FILTER (WHERE event_type = 'pageview'))[1] AS entry_page,
            (array_agg(pathname ORDER BY ts DESC, id DESC) FILTER (WHERE event_type = 'pageview'))[1] AS exit_page,
            (array_agg(referrer_source ORDER BY ts, id))[1] AS source,
            (array_agg(referrer_host ORDER BY ts, id))[1] AS referrer,
            {attribution},
            (array_agg(CASE WHEN screen_width IS NULL THEN NULL
                            WHEN screen_width < 576 THEN 'Mobile' WHEN screen_width < 992 THEN 'Tablet'
                            WHEN screen_width < 1440 THEN 'Laptop' ELSE 'Desktop' END ORDER BY ts, id))[1] AS screen
         FROM {ev} GROUP BY uday, bucket, visitor_hash, session_no"
    )
}

/// A group key: a SQL expression, judged per event or (cheaper, for facts of
/// the session) once per session.
#[derive(Debug, Clone)]
pub struct Key {
    pub expr: String,
    pub per_session: bool,
}

impl Key {
    pub fn event(expr: impl Into<String>) -> Self {
        Self { expr: expr.into(), per_session: false }
    }

    pub fn session(expr: impl Into<String>) -> Self {
        Self { expr: expr.into(), per_session: true }
    }
}

/// What to sum, and by which keys. Every field is a SQL fragment built by this
/// crate from a fixed whitelist; user values only ever enter as placeholders.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The events relation (from [`session_events_sql`]) and the sessions one.
    pub ev: String,
    pub s: String,
    /// Group keys, output as `k0..kn` in this order; rows with a NULL key are
    /// left out. Event keys see `ev`, `s` and `fanout`; session keys see `s`
    /// and `session_fanout`.
    pub keys: Vec<Key>,
    /// A `CROSS JOIN LATERAL ...` that gives one event several key values, or "".
    pub fanout: String,
    /// The same for sessions (the rollup's many session dimensions at once), or "".
    pub session_fanout: String,
    /// Which events are selected (filters), over `ev` and `s`.
    pub filter: String,
    /// Which selected events make a session and a visitor count for a key
    /// (pageviews for pages; every event otherwise).
    pub presence: String,
    /// Which present events count as `events` (goal-type events; every
    /// conversion for goals, pageview goals included).
    pub counted: String,
    /// Whether selected events' engaged time and scroll depth count (not for
    /// event-name and goal keys: those are about conversions, not reading).
    pub engaged: String,
}

/// The columns [`Aggregate::select`] returns after `uday, bucket, k0..kn`.
pub const SUM_COLUMNS: &str =
    "visitors, visits, pageviews, bounces, engaged_ms, scroll_depth_sum, engaged_pages, events, revenue, revenue_events";

/// `, k1, k3` for the given key indexes.
fn names(indexes: &[usize]) -> String {
    indexes.iter().map(|i| format!(", k{i}")).collect()
}

fn not_null(indexes: &[usize]) -> String {
    indexes.iter().map(|i| format!(" AND k{i} IS NOT NULL")).collect()
}

impl Aggregate {
    fn indexes(&self, per_session: bool) -> Vec<usize> {
        self.keys.iter().enumerate().filter(|(_, k)| k.per_session == per_session).map(|(i, _)| i).collect()
    }

    /// `(expr)::text AS kI` for the given keys.
    fn exprs(&self, indexes: &[usize]) -> String {
        indexes.iter().map(|i| format!(", ({})::text AS k{i}", self.keys[*i].expr)).collect()
    }

    /// `name AS (...)` CTEs ending in `sums` and `rev`; put them after `WITH <your CTEs>,`
    /// (or after `WITH` alone) and follow them with [`Aggregate::select`].
    pub fn ctes(&self) -> String {
        let (event_ix, session_ix) = (self.indexes(false), self.indexes(true));
        let all_ix: Vec<usize> = (0..self.keys.len()).collect();
        let (eks, all) = (names(&event_ix), names(&all_ix));
        let (event_exprs, session_exprs) = (self.exprs(&event_ix), self.exprs(&session_ix));
        let (event_not_null, session_not_null) = (not_null(&event_ix), not_null(&session_ix));
        let Self { ev, s, fanout, session_fanout, filter, presence, counted, engaged, .. } = self;
        let same_session = "s.uday = x.uday AND s.bucket = x.bucket AND s.visitor_hash = x.visitor_hash AND s.session_no = x.session_no";
        format!(
            "sel AS (
                SELECT ev.uday, ev.bucket, ev.visitor_hash, ev.session_no, ev.event_type, ev.pathname, ev.engaged_ms,
                       ev.scroll_depth, ev.revenue_minor, ev.revenue_currency, s.bounced{event_exprs},
                       coalesce(({presence}), false) AS presence, coalesce(({counted}), false) AS counted,
                       coalesce(({engaged}), false) AS engaged_row
                FROM {ev} ev JOIN {s} s ON s.uday = ev.uday AND s.bucket = ev.bucket
                                       AND s.visitor_hash = ev.visitor_hash AND s.session_no = ev.session_no
                {fanout}
                WHERE ({filter})),
             per_page AS (
                SELECT uday, bucket, visitor_hash, session_no{eks}, bool_or(bounced) AS bounced, bool_or(presence) AS present,
                       count(*) FILTER (WHERE presence AND event_type = 'pageview') AS pageviews,
                       count(*) FILTER (WHERE presence AND counted) AS events,
                       coalesce(sum(engaged_ms) FILTER (WHERE engaged_row), 0) AS engaged_ms,
                       max(scroll_depth) FILTER (WHERE engaged_row AND event_type = 'engagement') AS scroll,
                       coalesce(bool_or(engaged_row AND event_type = 'engagement'), false) AS engaged_page
                FROM sel WHERE true{event_not_null}
                GROUP BY uday, bucket, visitor_hash, session_no{eks}, pathname),
             per_session AS (
                SELECT uday, bucket, visitor_hash, session_no{eks}, bool_or(bounced) AS bounced,
                       sum(pageviews) AS pageviews, sum(events) AS events, sum(engaged_ms) AS engaged_ms,
                       coalesce(sum(scroll), 0) AS scroll_sum, count(*) FILTER (WHERE engaged_page) AS engaged_pages
                FROM per_page GROUP BY uday, bucket, visitor_hash, session_no{eks} HAVING bool_or(present)),
             keyed AS (
                SELECT ps.*{session_exprs}
                FROM per_session ps JOIN {s} s ON s.uday = ps.uday AND s.bucket = ps.bucket
                                               AND s.visitor_hash = ps.visitor_hash AND s.session_no = ps.session_no
                {session_fanout}),
             sums AS (
                SELECT uday, bucket{all}, count(DISTINCT visitor_hash)::bigint AS visitors, count(*)::bigint AS visits,
                       sum(pageviews)::bigint AS pageviews, count(*) FILTER (WHERE bounced)::bigint AS bounces,
                       sum(engaged_ms)::bigint AS engaged_ms, sum(scroll_sum)::bigint AS scroll_depth_sum,
                       sum(engaged_pages)::bigint AS engaged_pages, sum(events)::bigint AS events
                FROM keyed WHERE true{session_not_null} GROUP BY uday, bucket{all}),
             rev AS (
                SELECT uday, bucket{all}, jsonb_object_agg(cur, amount) AS revenue, jsonb_object_agg(cur, n) AS revenue_events
                FROM (SELECT x.uday, x.bucket{carried}{session_exprs}, x.revenue_currency AS cur,
                             sum(x.revenue_minor) AS amount, count(*) AS n
                      FROM (SELECT * FROM sel WHERE presence AND revenue_minor IS NOT NULL AND revenue_currency IS NOT NULL{event_not_null}) x
                      JOIN {s} s ON {same_session}
                      {session_fanout}
                      GROUP BY x.uday, x.bucket{carried_x}{session_group}, x.revenue_currency) c
                WHERE true{session_not_null}
                GROUP BY uday, bucket{all})",
            carried = event_ix.iter().map(|i| format!(", x.k{i}")).collect::<String>(),
            carried_x = event_ix.iter().map(|i| format!(", x.k{i}")).collect::<String>(),
            session_group = session_ix.iter().map(|i| format!(", ({})::text", self.keys[*i].expr)).collect::<String>(),
        )
    }

    /// `SELECT uday, bucket, k0.., <SUM_COLUMNS>` over the CTEs of [`Aggregate::ctes`].
    pub fn select(&self) -> String {
        let all = names(&(0..self.keys.len()).collect::<Vec<_>>());
        format!(
            "SELECT sums.*, coalesce(rev.revenue, '{{}}') AS revenue, coalesce(rev.revenue_events, '{{}}') AS revenue_events
             FROM sums LEFT JOIN rev USING (uday, bucket{all})"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_in_order_and_null_keys_are_dropped() {
        let a = Aggregate {
            ev: "ev".into(),
            s: "s".into(),
            keys: vec![Key::session("s.country"), Key::event("ev.bucket")],
            fanout: String::new(),
            session_fanout: String::new(),
            filter: "true".into(),
            presence: "true".into(),
            counted: "true".into(),
            engaged: "true".into(),
        };
        let sql = a.ctes();
        assert!(sql.contains("s.bounced, (ev.bucket)::text AS k1,"), "event keys per event");
        assert!(sql.contains("SELECT ps.*, (s.country)::text AS k0"), "session keys per session");
        assert!(sql.contains("bucket, k0, k1, count(DISTINCT visitor_hash)"), "output in key order");
        assert!(sql.contains("WHERE true AND k1 IS NOT NULL") && sql.contains("WHERE true AND k0 IS NOT NULL"));
    }
}
