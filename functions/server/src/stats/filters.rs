//! Dimensions and filters to SQL. Dimension names map to a fixed set of column
//! expressions; every user-given value (filter values, prop keys, goals) goes
//! in as a bind parameter.

use tokio_postgres::types::ToSql;

use super::goals::{Goal, Goals};
use super::request::{Dimension, DimensionKind, Filter, Operator};
use super::sessions::{GOAL_TYPE_EVENTS, INTERACTIVE, Key};
use crate::rollup::{PAGE_KEY, PAGE_PRESENCE, SESSION_DIMENSIONS};

/// Bind parameters, numbered as they are pushed.
#[derive(Default)]
pub struct Params {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Params {
    /// Adds a value; returns its placeholder with `cast` (say `::text[]`).
    pub fn push<T: ToSql + Sync + Send + 'static>(&mut self, value: T, cast: &str) -> String {
        self.values.push(Box::new(value));
        format!("${}{cast}", self.values.len())
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()
    }
}

/// The session relation's expression of a `visit:` dimension (the rollup's own).
pub fn session_expr(name: &str) -> &'static str {
    SESSION_DIMENSIONS.iter().find(|(n, _)| *n == name).map_or("NULL", |(_, e)| e)
}

/// `unnest(...)` of the given goals, keyed by display name.
fn goals_source<'a>(goals: impl Iterator<Item = &'a Goal>, params: &mut Params) -> String {
    let (keys, kinds, patterns, names) = Goals::by_name_arrays(goals);
    format!(
        "unnest({}, {}, {}, {}) AS g(key, kind, pattern, event_name)",
        params.push(keys, "::text[]"),
        params.push(kinds, "::text[]"),
        params.push(patterns, "::text[]"),
        params.push(names, "::text[]")
    )
}

/// The grouping of a query's dimensions over `ev` (events) and `s` (sessions).
pub struct Grouping {
    pub keys: Vec<Key>,
    pub fanout: String,
    pub presence: &'static str,
    pub counted: &'static str,
    pub engaged: &'static str,
}

pub fn grouping(dims: &[Dimension], goals: &Goals, params: &mut Params) -> Grouping {
    let mut fanout = String::new();
    let keys = dims
        .iter()
        .map(|d| match d {
            Dimension::Page => Key::event(PAGE_KEY),
            Dimension::Hostname => Key::event("ev.hostname"),
            Dimension::Name => Key::event(format!("CASE WHEN ev.event_type IN {INTERACTIVE} THEN ev.name END")),
            Dimension::Prop(k) => {
                let key = params.push(k.clone(), "::text");
                Key::event(format!("CASE WHEN ev.event_type IN {INTERACTIVE} THEN ev.props ->> {key} END"))
            }
            Dimension::Goal => {
                fanout = format!(
                    "CROSS JOIN LATERAL (SELECT g.key FROM {} WHERE {}) AS gd",
                    goals_source(goals.goals.iter(), params),
                    Goals::match_sql()
                );
                Key::event("gd.key")
            }
            Dimension::Visit(v) => Key::session(session_expr(v)),
            // The bucket is part of the session's identity: per session it is one value.
            Dimension::Time(_) => Key::session("s.bucket"),
        })
        .collect();
    let has = |k: DimensionKind| dims.iter().any(|d| d.kind() == k);
    Grouping {
        keys,
        fanout,
        presence: if has(DimensionKind::Page) { PAGE_PRESENCE } else { "true" },
        counted: if has(DimensionKind::Goal) { "true" } else { GOAL_TYPE_EVENTS },
        engaged: if has(DimensionKind::EventName) || has(DimensionKind::Goal) { "false" } else { "true" },
    }
}

/// All top-level filters, and-ed; `true` when there are none.
pub fn filters_sql(filters: &[Filter], goals: &Goals, params: &mut Params) -> String {
    if filters.is_empty() {
        return "true".into();
    }
    filters.iter().map(|f| filter_sql(f, goals, params)).collect::<Vec<_>>().join(" AND ")
}

fn filter_sql(filter: &Filter, goals: &Goals, params: &mut Params) -> String {
    let join = |list: &[Filter], op: &str, params: &mut Params| {
        format!("({})", list.iter().map(|f| filter_sql(f, goals, params)).collect::<Vec<_>>().join(op))
    };
    match filter {
        Filter::And(list) => join(list, " AND ", params),
        Filter::Or(list) => join(list, " OR ", params),
        Filter::Not(f) => format!("NOT {}", filter_sql(f, goals, params)),
        Filter::Condition { op, dimension: Dimension::Goal, values } => {
            let named = goals.goals.iter().filter(|g| values.contains(&g.display_name));
            let test = format!("EXISTS (SELECT 1 FROM {} WHERE {})", goals_source(named, params), Goals::match_sql());
            if *op == Operator::IsNot { format!("NOT {test}") } else { test }
        }
        Filter::Condition { op, dimension, values } => condition_sql(*op, dimension, values, params),
    }
}

/// A condition on one dimension; NULL (no value) never matches, so `is_not`
/// and the other negations keep rows without the value.
fn condition_sql(op: Operator, dimension: &Dimension, values: &[String], params: &mut Params) -> String {
    let column = match dimension {
        Dimension::Page => "ev.pathname".to_owned(),
        Dimension::Hostname => "ev.hostname".to_owned(),
        Dimension::Name => "ev.name".to_owned(),
        Dimension::Prop(k) => format!("ev.props ->> {}", params.push(k.clone(), "::text")),
        Dimension::Visit(v) => session_expr(v).to_owned(),
        // Refused by the parser; a false condition if it ever got here.
        Dimension::Goal | Dimension::Time(_) => return "false".into(),
    };
    match_sql(op, &column, values, params)
}

/// `column` against the values under `op` (also the imported tables' test).
pub fn match_sql(op: Operator, column: &str, values: &[String], params: &mut Params) -> String {
    let (test, values): (&str, Vec<String>) = match op {
        Operator::Is | Operator::IsNot => ("=", values.to_vec()),
        Operator::Contains | Operator::ContainsNot => ("LIKE", values.iter().map(|v| format!("%{}%", escape_like(v))).collect()),
        Operator::Matches | Operator::MatchesNot => ("~", values.to_vec()),
    };
    let matched = format!("coalesce(({column}) {test} ANY({}), false)", params.push(values, "::text[]"));
    match op {
        Operator::IsNot | Operator::ContainsNot | Operator::MatchesNot => format!("NOT {matched}"),
        _ => matched,
    }
}

fn escape_like(value: &str) -> String {
    value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_placeholders_never_sql() {
        let mut params = Params::default();
        let evil = "'; DROP TABLE events; --".to_owned();
        let f = Filter::Or(vec![
            Filter::Condition { op: Operator::Is, dimension: Dimension::Visit("country"), values: vec![evil.clone()] },
            Filter::Not(Box::new(Filter::Condition { op: Operator::Contains, dimension: Dimension::Prop(evil.clone()), values: vec!["50%".into()] })),
        ]);
        let sql = filters_sql(&[f], &Goals::default(), &mut params);
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(sql, "(coalesce((s.country) = ANY($1::text[]), false) OR NOT coalesce((ev.props ->> $2::text) LIKE ANY($3::text[]), false))");
        assert_eq!(params.refs().len(), 3);
    }

    #[test]
    fn contains_takes_like_wildcards_literally() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
