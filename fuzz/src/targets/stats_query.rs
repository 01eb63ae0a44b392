//! The Stats API v2 query: a body reads as a request or gets a reason;
//! parse → serialise → parse is stable; the typed query parses the same from
//! either; every refusal is the client's (a 400) with a reason; dimension
//! names read back as themselves; and the filter compiler puts every
//! user-given text (filter values, prop keys, goal names) in bind parameters:
//! the SQL text does not change when those texts do, and it has exactly one
//! placeholder per bind value.

use engagetrack_server::stats::filters::{Params, filters_sql, grouping};
use engagetrack_server::stats::goals::{Goal, Goals};
use engagetrack_server::stats::request::{Dimension, Filter};
use engagetrack_server::stats::{Query, QueryRequest};

use crate::corpus::fuzz_target;

fuzz_target!("stats_query", property);

fn property(body: &[u8]) {
    let request = match QueryRequest::from_json(body) {
        Ok(request) => request,
        Err(e) => return assert!(e.is_client_error() && !e.to_string().trim().is_empty(), "{e:?}"),
    };
    let text = serde_json::to_vec(&request).expect("a request serialises");
    let again = QueryRequest::from_json(&text).unwrap_or_else(|e| panic!("a serialised request does not read back: {e}"));
    assert_eq!(serde_json::to_vec(&again).expect("serialises"), text, "serialisation is stable");
    let query = Query::parse(&request);
    assert_eq!(format!("{query:?}"), format!("{:?}", Query::parse(&again)), "the round trip changed the query");
    match query {
        Err(e) => assert!(e.is_client_error() && !e.to_string().trim().is_empty(), "{e:?}"),
        Ok(query) => compiles_with_bound_values(&query),
    }
}

fn compiles_with_bound_values(query: &Query) {
    for d in &query.dimensions {
        assert!(Dimension::parse(&d.name()).is_ok_and(|back| back == *d), "dimension name round trip: {d:?}");
    }
    let goals = goals();
    let (sql, binds) = compile(&query.dimensions, &query.filters, &goals);
    assert_eq!(placeholders(&sql), binds, "placeholders and bind values differ in number: {sql}");
    let blank_dims: Vec<_> = query.dimensions.iter().map(blank_dimension).collect();
    let blank_filters: Vec<_> = query.filters.iter().map(blank_filter).collect();
    assert_eq!(compile(&blank_dims, &blank_filters, &goals), (sql, binds), "a user value changed the SQL text");
}

/// The grouping and the filters, as the engine puts them in one statement.
fn compile(dims: &[Dimension], filters: &[Filter], goals: &Goals) -> (String, usize) {
    let mut params = Params::default();
    let g = grouping(dims, goals, &mut params);
    let keys: Vec<_> = g.keys.iter().map(|k| k.expr.as_str()).collect();
    let where_ = filters_sql(filters, goals, &mut params);
    (format!("{} | {} | {} {} {} | {where_}", keys.join(", "), g.fanout, g.presence, g.counted, g.engaged), params.refs().len())
}

/// `$1`, `$2`, ...: each one bind parameter.
fn placeholders(sql: &str) -> usize {
    sql.as_bytes().windows(2).filter(|w| w[0] == b'$' && w[1].is_ascii_digit()).count()
}

const BLANK: &str = "x";

fn blank_dimension(d: &Dimension) -> Dimension {
    match d {
        Dimension::Prop(_) => Dimension::Prop(BLANK.into()),
        other => other.clone(),
    }
}

fn blank_filter(f: &Filter) -> Filter {
    match f {
        Filter::Condition { op, dimension, values } => {
            Filter::Condition { op: *op, dimension: blank_dimension(dimension), values: vec![BLANK.into(); values.len()] }
        }
        Filter::And(list) => Filter::And(list.iter().map(blank_filter).collect()),
        Filter::Or(list) => Filter::Or(list.iter().map(blank_filter).collect()),
        Filter::Not(inner) => Filter::Not(Box::new(blank_filter(inner))),
    }
}

/// A site's goals, one of each kind, as the engine loads them.
fn goals() -> Goals {
    let goal = |kind: &str, name: &str, pattern: Option<&str>, event: Option<&str>| Goal {
        id: uuid::Uuid::nil(),
        kind: kind.into(),
        display_name: name.into(),
        like_pattern: pattern.map(Into::into),
        event_name: event.map(Into::into),
        currency: None,
        created_at: chrono::DateTime::UNIX_EPOCH,
    };
    Goals { goals: vec![goal("pageview", "Visit /blog*", Some("/blog%"), None), goal("event", "Signup", None, Some("Signup"))] }
}
