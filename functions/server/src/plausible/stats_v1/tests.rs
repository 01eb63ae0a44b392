//! The v1 parameters: what each becomes in the v2 query, and every refusal.

use chrono::NaiveDate;
use serde_json::json;

use super::*;
use crate::stats::Query;
use crate::stats::request::{DateRange, Dimension, Filter, Operator, TimeGrain};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 18).unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Params {
    let mut all = vec![("site_id", "example.com")];
    all.extend_from_slice(pairs);
    let qs = serde_urlencoded::to_string(&all).unwrap();
    serde_urlencoded::from_str(&qs).unwrap_or_else(|e| panic!("{qs}: {e}"))
}

fn ok(endpoint: Endpoint, pairs: &[(&str, &str)]) -> V1Query {
    parse(endpoint, &params(pairs), today()).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

fn err(endpoint: Endpoint, pairs: &[(&str, &str)]) -> V1Error {
    match parse(endpoint, &params(pairs), today()) {
        Ok(q) => panic!("{pairs:?} was accepted: {:?}", q.request),
        Err(e) => e,
    }
}

/// The typed v2 query the engine will run.
fn typed(q: &V1Query) -> Query {
    Query::parse(&q.request).unwrap_or_else(|e| panic!("{:?}: {e}", q.request))
}

fn days(q: &V1Query) -> (NaiveDate, NaiveDate) {
    match typed(q).date_range {
        DateRange::Dates(a, b) => (a, b),
        other => panic!("{other:?}"),
    }
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

#[test]
fn defaults_are_thirty_days_of_visitors() {
    let q = ok(Endpoint::Aggregate, &[]);
    assert_eq!(q.request.site_id, "example.com");
    assert_eq!(q.metrics, vec![Metric::Visitors]);
    assert_eq!(q.request.metrics, vec!["visitors"]);
    // Plausible's 30d: the date and the 30 days before it.
    assert_eq!(days(&q), (d(2026, 10, 19), d(2026, 11, 18)));
    let t = typed(&q);
    assert!(t.dimensions.is_empty() && t.filters.is_empty() && !t.compare_previous && !t.with_imported);
}

#[test]
fn periods_are_plausibles() {
    let range = |period: &str, date: Option<&str>| {
        let mut p = vec![("period", period)];
        if let Some(date) = date {
            p.push(("date", date));
        }
        days(&ok(Endpoint::Aggregate, &p))
    };
    assert_eq!(range("day", None), (today(), today()));
    assert_eq!(range("day", Some("today")), (today(), today()));
    assert_eq!(range("day", Some("2026-02-03")), (d(2026, 2, 3), d(2026, 2, 3)));
    assert_eq!(range("7d", None), (d(2026, 11, 12), today()));
    assert_eq!(range("7d", Some("2026-03-02")), (d(2026, 2, 24), d(2026, 3, 2)));
    assert_eq!(range("30d", Some("2026-03-31")), (d(2026, 3, 1), d(2026, 3, 31)));
    assert_eq!(range("month", None), (d(2026, 11, 1), d(2026, 11, 30)));
    assert_eq!(range("month", Some("2024-02-10")), (d(2024, 2, 1), d(2024, 2, 29)));
    assert_eq!(range("6mo", None), (d(2026, 6, 1), d(2026, 11, 30)));
    assert_eq!(range("12mo", Some("2026-12-05")), (d(2026, 1, 1), d(2026, 12, 31)));
    assert_eq!(range("custom", Some("2026-01-01,2026-01-31")), (d(2026, 1, 1), d(2026, 1, 31)));
    assert_eq!(range("custom", Some("2026-01-05, 2026-01-05")), (d(2026, 1, 5), d(2026, 1, 5)));
}

#[test]
fn bad_periods_and_dates_are_refused() {
    let e = err(Endpoint::Aggregate, &[("period", "3d")]);
    assert!(matches!(&e, V1Error::Period(p) if p == "3d"), "{e}");
    assert!(matches!(err(Endpoint::Aggregate, &[("period", "year")]), V1Error::Period(_)));
    for (period, date) in [
        ("custom", None),
        ("custom", Some("2026-01-01")),
        ("custom", Some("2026-01-31,2026-01-01")),
        ("custom", Some("2026-01-01,2026-02-30")),
        ("day", Some("2026-1-5")),
        ("day", Some("yesterday")),
        ("day", Some("0001-01-01")),
        ("7d", Some("2026-01-01,2026-01-02")),
    ] {
        let mut p = vec![("period", period)];
        if let Some(date) = date {
            p.push(("date", date));
        }
        let e = err(Endpoint::Aggregate, &p);
        assert!(matches!(e, V1Error::Date(_)), "{p:?}: {e}");
    }
}

#[test]
fn metrics_are_checked() {
    let q = ok(Endpoint::Aggregate, &[("metrics", "visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events")]);
    assert_eq!(q.request.metrics.len(), 7);
    assert_eq!(typed(&q).metrics.len(), 7);
    for (metrics, reason) in [
        ("visitors,visitors", "listed twice"),
        ("visitorz", "unknown metric `visitorz`"),
        ("visitors,", "empty name"),
        ("scroll_depth", "not a Stats API v1 metric"),
        ("total_revenue", "not a Stats API v1 metric"),
        ("conversion_rate", "needs an `event:goal`"),
        ("time_on_page", "needs an `event:page`"),
    ] {
        match err(Endpoint::Aggregate, &[("metrics", metrics)]) {
            V1Error::Metric(m) => assert!(m.contains(reason), "{metrics}: {m}"),
            other => panic!("{metrics}: {other}"),
        }
    }
}

#[test]
fn session_metrics_refuse_event_only_filters_and_breakdowns() {
    for filter in ["event:name==Signup", "event:goal==Signup", "event:props:plan==pro"] {
        for metric in ["visits", "bounce_rate", "visit_duration", "views_per_visit"] {
            let e = err(Endpoint::Aggregate, &[("metrics", metric), ("filters", filter)]);
            assert!(matches!(&e, V1Error::Metric(m) if m.contains("session metric")), "{metric} with {filter}: {e}");
        }
    }
    for property in ["event:name", "event:goal", "event:props:plan"] {
        let e = err(Endpoint::Breakdown, &[("metrics", "bounce_rate"), ("property", property)]);
        assert!(matches!(&e, V1Error::Metric(m) if m.contains("cannot be broken down")), "{property}: {e}");
    }
    assert!(matches!(err(Endpoint::Aggregate, &[("metrics", "views_per_visit"), ("filters", "event:page==/a")]), V1Error::Metric(_)));
    assert!(matches!(err(Endpoint::Breakdown, &[("metrics", "views_per_visit"), ("property", "visit:source")]), V1Error::Metric(_)));
    // Page filters are fine for the other session metrics.
    ok(Endpoint::Aggregate, &[("metrics", "visits,bounce_rate,visit_duration"), ("filters", "event:page==/a")]);
}

#[test]
fn conversion_rate_and_time_on_page_have_their_places() {
    let q = ok(Endpoint::Aggregate, &[("metrics", "visitors,conversion_rate"), ("filters", "event:goal==Signup")]);
    assert!(typed(&q).filters[0].is_goal_condition());
    ok(Endpoint::Breakdown, &[("metrics", "conversion_rate"), ("property", "event:goal")]);
    ok(Endpoint::Breakdown, &[("metrics", "conversion_rate"), ("property", "visit:source"), ("filters", "event:goal==Signup")]);
    ok(Endpoint::Timeseries, &[("metrics", "conversion_rate"), ("filters", "event:goal==Signup")]);
    ok(Endpoint::Aggregate, &[("metrics", "time_on_page"), ("filters", "event:page==/a")]);
    ok(Endpoint::Breakdown, &[("metrics", "time_on_page"), ("property", "event:page")]);
    assert!(matches!(err(Endpoint::Breakdown, &[("metrics", "time_on_page"), ("property", "visit:source")]), V1Error::Metric(_)));
    assert!(matches!(
        err(Endpoint::Aggregate, &[("metrics", "time_on_page"), ("filters", "event:page==/a;event:goal==Signup")]),
        V1Error::Metric(_)
    ));
}

#[test]
fn filters_become_v2_conditions() {
    let q =
        ok(Endpoint::Aggregate, &[("filters", r"visit:country==DE|FR;event:page!=/blog*;event:props:variant==a\|b;visit:device==Mobile")]);
    let t = typed(&q);
    assert_eq!(t.filters.len(), 4);
    assert_eq!(
        t.filters[0],
        Filter::Condition { op: Operator::Is, dimension: Dimension::Visit("country"), values: vec!["DE".into(), "FR".into()] }
    );
    assert_eq!(t.filters[1], Filter::Condition { op: Operator::MatchesNot, dimension: Dimension::Page, values: vec!["^/blog.*$".into()] });
    assert_eq!(
        t.filters[2],
        Filter::Condition { op: Operator::Is, dimension: Dimension::Prop("variant".into()), values: vec!["a|b".into()] }
    );
    assert_eq!(t.filters[3], Filter::Condition { op: Operator::Is, dimension: Dimension::Visit("screen"), values: vec!["Mobile".into()] });
    let e = err(Endpoint::Aggregate, &[("filters", "visit:planet==Mars")]);
    assert!(matches!(&e, V1Error::Filter(m) if m.contains("visit:planet")), "{e}");
}

#[test]
fn timeseries_intervals() {
    let grain = |pairs: &[(&str, &str)]| {
        let q = ok(Endpoint::Timeseries, pairs);
        assert!(q.request.include.time_labels);
        typed(&q).time_dimension().map(|(_, g)| g)
    };
    assert_eq!(grain(&[]), Some(TimeGrain::Day));
    assert_eq!(grain(&[("period", "day")]), Some(TimeGrain::Hour));
    assert_eq!(grain(&[("period", "6mo")]), Some(TimeGrain::Month));
    assert_eq!(grain(&[("period", "12mo")]), Some(TimeGrain::Month));
    assert_eq!(grain(&[("period", "12mo"), ("interval", "date")]), Some(TimeGrain::Day));
    assert_eq!(grain(&[("period", "7d"), ("interval", "day")]), Some(TimeGrain::Day));
    assert_eq!(grain(&[("period", "custom"), ("date", "2026-01-01,2026-03-31"), ("interval", "month")]), Some(TimeGrain::Month));
    for interval in ["hour", "week", "minute", ""] {
        assert!(matches!(err(Endpoint::Timeseries, &[("interval", interval)]), V1Error::Interval(_)), "{interval}");
    }
}

#[test]
fn breakdowns_name_their_rows_and_pages() {
    let q = ok(Endpoint::Breakdown, &[("property", "visit:source"), ("metrics", "visitors,bounce_rate")]);
    assert_eq!(q.row_keys, vec!["source"]);
    assert_eq!(q.request.order_by, vec![("visitors".to_owned(), "desc".to_owned())]);
    assert_eq!(q.request.pagination, Some(Pagination { limit: 100, offset: 0 }));
    let q = ok(Endpoint::Breakdown, &[("property", "event:props:plan"), ("limit", "10"), ("page", "3")]);
    assert_eq!(q.row_keys, vec!["plan"]);
    assert_eq!(typed(&q).dimensions, vec![Dimension::Prop("plan".into())]);
    assert_eq!((typed(&q).limit, typed(&q).offset), (10, 20));
    let q = ok(Endpoint::Breakdown, &[("property", "visit:device")]);
    assert_eq!(
        (q.row_keys.as_slice(), q.request.dimensions.as_slice()),
        (["device".to_owned()].as_slice(), ["visit:screen".to_owned()].as_slice())
    );
    let q = ok(Endpoint::Breakdown, &[("property", "visit:browser_version")]);
    assert_eq!(q.row_keys, vec!["browser", "browser_version"]);
    assert_eq!(q.request.dimensions, vec!["visit:browser", "visit:browser_version"]);
    // time_on_page alone: ordered by visitors, which is asked for but not shown.
    let q = ok(Endpoint::Breakdown, &[("property", "event:page"), ("metrics", "time_on_page")]);
    assert_eq!(q.request.metrics, vec!["time_on_page", "visitors"]);
    assert_eq!(q.metrics, vec![Metric::TimeOnPage]);
    assert_eq!(q.request.order_by, vec![("visitors".to_owned(), "desc".to_owned())]);
    let q = ok(Endpoint::Breakdown, &[("property", "event:page"), ("metrics", "time_on_page,pageviews")]);
    assert_eq!(q.request.order_by, vec![("pageviews".to_owned(), "desc".to_owned())]);
    ok(Endpoint::Breakdown, &[("property", "visit:source"), ("limit", "1000")]);
}

#[test]
fn bad_breakdowns_are_refused() {
    assert!(matches!(err(Endpoint::Breakdown, &[]), V1Error::Property(m) if m.contains("required")));
    assert!(matches!(err(Endpoint::Breakdown, &[("property", "event:hostname")]), V1Error::Property(m) if m.contains("hostname")));
    assert!(matches!(err(Endpoint::Breakdown, &[("property", "visit:screen")]), V1Error::Property(m) if m.contains("unknown")));
    assert!(matches!(err(Endpoint::Breakdown, &[("property", "time:day")]), V1Error::Property(_)));
    for limit in ["0", "1001", "-1", "ten", "1.5", ""] {
        assert!(matches!(err(Endpoint::Breakdown, &[("property", "visit:source"), ("limit", limit)]), V1Error::Limit(_)), "{limit}");
    }
    for page in ["0", "-2", "x", "", "99999999999999999999"] {
        assert!(matches!(err(Endpoint::Breakdown, &[("property", "visit:source"), ("page", page)]), V1Error::Page(_)), "{page}");
    }
    // Past the engine's largest offset.
    assert!(matches!(err(Endpoint::Breakdown, &[("property", "visit:source"), ("limit", "1000"), ("page", "1002")]), V1Error::Page(_)));
}

#[test]
fn parameters_belong_to_their_endpoints() {
    for (endpoint, param, value) in [
        (Endpoint::Aggregate, "property", "visit:source"),
        (Endpoint::Aggregate, "limit", "5"),
        (Endpoint::Aggregate, "page", "2"),
        (Endpoint::Aggregate, "interval", "day"),
        (Endpoint::Timeseries, "property", "visit:source"),
        (Endpoint::Timeseries, "compare", "previous_period"),
        (Endpoint::Breakdown, "interval", "day"),
    ] {
        let mut pairs = vec![(param, value)];
        if endpoint == Endpoint::Breakdown {
            pairs.push(("property", "visit:source"));
        }
        let e = err(endpoint, &pairs);
        assert!(matches!(&e, V1Error::NotApplicable { param: p, .. } if *p == param), "{param} on {endpoint:?}: {e}");
    }
    let unknown = serde_urlencoded::from_str::<Params>("site_id=example.com&metric=visitors");
    assert!(unknown.unwrap_err().to_string().contains("metric"));
    let twice = serde_urlencoded::from_str::<Params>("site_id=a.com&site_id=b.com");
    assert!(twice.is_err());
}

#[test]
fn site_compare_and_imported() {
    let missing = parse(Endpoint::Aggregate, &Params::default(), today()).unwrap_err();
    assert!(matches!(missing, V1Error::MissingSiteId));
    let blank = Params { site_id: Some("  ".into()), ..Params::default() };
    assert!(matches!(parse(Endpoint::Aggregate, &blank, today()), Err(V1Error::MissingSiteId)));
    let q = ok(Endpoint::Aggregate, &[("compare", "previous_period"), ("with_imported", "true")]);
    let t = typed(&q);
    assert!(t.compare_previous && t.with_imported);
    assert!(!typed(&ok(Endpoint::Aggregate, &[("with_imported", "false")])).with_imported);
    assert!(typed(&ok(Endpoint::Breakdown, &[("property", "visit:source"), ("compare", "previous_period")])).compare_previous);
    assert!(matches!(err(Endpoint::Aggregate, &[("compare", "year_over_year")]), V1Error::Compare(_)));
    assert!(matches!(err(Endpoint::Aggregate, &[("with_imported", "yes")]), V1Error::WithImported(_)));
}

#[test]
fn messages_say_what_is_wrong() {
    assert_eq!(
        err(Endpoint::Aggregate, &[("period", "3d")]).to_string(),
        "invalid period `3d`: one of day, 7d, 30d, month, 6mo, 12mo, custom"
    );
    assert_eq!(err(Endpoint::Aggregate, &[("interval", "day")]).to_string(), "`interval` does not apply to /api/v1/stats/aggregate");
    assert!(V1Error::Limit("0".into()).is_client_error());
    assert!(!V1Error::Cache("x".into()).is_client_error());
    assert_eq!(
        json!(err(Endpoint::Aggregate, &[("metrics", "visitors,visitors")]).to_string()),
        json!("invalid metrics: `visitors` is listed twice")
    );
}
