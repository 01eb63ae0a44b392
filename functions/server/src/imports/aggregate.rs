//! Event-level exports (GA4's BigQuery rows, Umami's website_event rows and
//! database) are summed here into the same imported_* rows Plausible
//! exports, per day: a visitor is the tool's visitor id, counted once per
//! day and dimension value; a visit is the tool's visit id, dated by its
//! first event, with its entry and exit page, bounce (one pageview and no
//! custom event) and duration (engaged time if the tool measured it, else
//! the span from its first to its last event).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;

use super::{RowSet, Table};

/// One event of an event-level export, in the product's words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hit {
    /// The day of the event, in the tool's (the property's) timezone.
    pub date: NaiveDate,
    /// Milliseconds since the epoch: orders a visit's events.
    pub at_ms: i64,
    pub visitor: String,
    pub visit: String,
    /// None: a pageview; Some(name): a custom event; Some(""): an event
    /// that only adds engaged time to its visit (GA4's user_engagement).
    pub event_name: Option<String>,
    pub hostname: String,
    pub page: String,
    /// The event's link (outbound clicks, downloads).
    pub link_url: String,
    pub engagement_ms: i64,
    /// Facts of the visit, taken from its first event that has them.
    pub source: String,
    pub referrer: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub device: String,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub country: String,
    pub region: String,
    pub city: String,
}

#[derive(Default)]
struct Group {
    visitors: HashSet<String>,
    visits: i64,
    duration_s: i64,
    bounces: i64,
    pageviews: i64,
    /// pages: visits with a pageview of the page; custom events: the count.
    count: i64,
    counted_visits: HashSet<String>,
}

type Key = (Table, NaiveDate, Vec<String>);

/// Sums hits into imported_* rows.
pub fn aggregate(mut hits: Vec<Hit>) -> RowSet {
    hits.sort_by(|a, b| (&a.visitor, &a.visit, a.at_ms).cmp(&(&b.visitor, &b.visit, b.at_ms)));
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    let mut visits: HashMap<(&str, &str), Vec<&Hit>> = HashMap::new();
    for h in &hits {
        visits.entry((&h.visitor, &h.visit)).or_default().push(h);
    }
    for ((visitor, visit), events) in visits {
        let first = events[0];
        let pageviews: Vec<&&Hit> = events.iter().filter(|h| h.event_name.is_none()).collect();
        let customs = events.iter().filter(|h| h.event_name.as_deref().is_some_and(|n| !n.is_empty())).count();
        let bounce = i64::from(pageviews.len() <= 1 && customs == 0);
        let engaged: i64 = events.iter().map(|h| h.engagement_ms.max(0)).sum();
        let span = events.last().map_or(0, |l| l.at_ms - first.at_ms);
        let duration_s = if engaged > 0 { engaged / 1000 } else { span.max(0) / 1000 };
        let pick = |f: fn(&Hit) -> &str| events.iter().map(|h| f(h)).find(|v| !v.is_empty()).unwrap_or("").to_owned();
        let date = first.date;
        let pv = pageviews.len() as i64;
        let mut visit_row = |table: Table, dims: Vec<String>| {
            let g = groups.entry((table, date, dims)).or_default();
            g.visitors.insert(visitor.to_owned());
            g.visits += 1;
            g.duration_s += duration_s;
            g.bounces += bounce;
            g.pageviews += pv;
        };
        visit_row(Table::Visitors, vec![]);
        visit_row(
            Table::Sources,
            vec![
                pick(|h| &h.source),
                pick(|h| &h.referrer),
                pick(|h| &h.utm_source),
                pick(|h| &h.utm_medium),
                pick(|h| &h.utm_campaign),
                pick(|h| &h.utm_content),
                pick(|h| &h.utm_term),
                String::new(),
            ],
        );
        visit_row(Table::Locations, vec![pick(|h| &h.country), pick(|h| &h.region), pick(|h| &h.city)]);
        visit_row(Table::Devices, vec![pick(|h| &h.device)]);
        visit_row(Table::Browsers, vec![pick(|h| &h.browser), pick(|h| &h.browser_version)]);
        visit_row(Table::OperatingSystems, vec![pick(|h| &h.os), pick(|h| &h.os_version)]);
        if let (Some(entry), Some(exit)) = (pageviews.first(), pageviews.last()) {
            visit_row(Table::EntryPages, vec![entry.page.clone()]);
            visit_row(Table::ExitPages, vec![exit.page.clone()]);
        }
        for h in &events {
            let visit_key = format!("{visitor}\u{0}{visit}");
            let (table, dims) = match h.event_name.as_deref() {
                None => (Table::Pages, vec![h.hostname.clone(), h.page.clone()]),
                Some("") => continue,
                Some(name) => (Table::CustomEvents, vec![name.to_owned(), h.link_url.clone(), String::new()]),
            };
            // Pages and events are dated by the event itself.
            let g = groups.entry((table, h.date, dims)).or_default();
            g.visitors.insert(visitor.to_owned());
            g.count += 1;
            g.counted_visits.insert(visit_key);
        }
    }
    let mut set = RowSet::default();
    for ((table, date, dims), g) in groups {
        let visitors = g.visitors.len() as i64;
        let metrics = match table {
            Table::Pages => vec![visitors, g.counted_visits.len() as i64, g.count, 0, 0, 0, 0],
            Table::CustomEvents => vec![visitors, g.count],
            // entrances / exits stand where visits are
            _ => vec![visitors, g.visits, g.duration_s, g.bounces, g.pageviews],
        };
        set.add(table, date, dims, metrics);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(visitor: &str, visit: &str, at_s: i64, page: &str, name: Option<&str>) -> Hit {
        Hit {
            date: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            at_ms: at_s * 1000,
            visitor: visitor.into(),
            visit: visit.into(),
            event_name: name.map(Into::into),
            hostname: "example.com".into(),
            page: page.into(),
            country: if at_s == 0 { "DE".into() } else { String::new() },
            ..Hit::default()
        }
    }

    #[test]
    fn visits_get_entry_exit_bounce_and_duration() {
        let set = aggregate(vec![
            hit("a", "1", 0, "/", None),
            hit("a", "1", 30, "/pricing", None),
            hit("a", "1", 40, "/pricing", Some("Signup")),
            hit("a", "2", 5000, "/blog", None),
            hit("b", "1", 0, "/", None),
        ]);
        assert_eq!(set.total(Table::Visitors, "visitors"), 2);
        assert_eq!(set.total(Table::Visitors, "visits"), 3);
        assert_eq!(set.total(Table::Visitors, "pageviews"), 4);
        assert_eq!(set.total(Table::Visitors, "bounces"), 2);
        assert_eq!(set.total(Table::Visitors, "visit_duration"), 40);
        assert_eq!(set.total(Table::CustomEvents, "events"), 1);
        assert_eq!(set.total(Table::EntryPages, "entrances"), 3);
        let exits: Vec<_> = set.rows().filter(|r| r.table == Table::ExitPages).map(|r| (r.dims[0].clone(), r.metrics[1])).collect();
        assert_eq!(exits, vec![("/".to_owned(), 1), ("/blog".to_owned(), 1), ("/pricing".to_owned(), 1)]);
        // The country of a visit is its first event's that has one.
        let de: i64 = set.rows().filter(|r| r.table == Table::Locations && r.dims[0] == "DE").map(|r| r.metrics[1]).sum();
        assert_eq!(de, 2);
        let home = set.rows().find(|r| r.table == Table::Pages && r.dims[1] == "/").unwrap();
        assert_eq!(home.metrics[..3], [2, 2, 2]);
    }
}
