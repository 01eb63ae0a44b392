//! The engine's (Stats API v2) answer in Stats API v1's shapes.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Endpoint, V1Query};
use crate::stats::request::Metric;
use crate::stats::response::{QueryResponse, Sums, round};

/// `{"results": ...}` of the endpoint the query was parsed for.
/// With `with_imported=true` and a shape imported data cannot answer, v1 adds
/// a top-level `warning` beside the native results, as Plausible does.
pub fn shape(q: &V1Query, r: &QueryResponse) -> Value {
    let mut answer = match q.endpoint {
        Endpoint::Aggregate => aggregate(q, r),
        Endpoint::Timeseries => timeseries(q, r),
        Endpoint::Breakdown => breakdown(q, r),
    };
    if let (Some(warning), Value::Object(fields)) = (&r.meta.imports_warning, &mut answer) {
        fields.insert("warning".into(), Value::String(warning.clone()));
    }
    answer
}

/// A metric's value as v1 shows it: `bounce_rate` and `visit_duration` are
/// whole numbers there (our v2 gives the bounce rate one decimal).
fn v1_value(m: Metric, v: &Value) -> Value {
    match m {
        Metric::BounceRate | Metric::VisitDuration => v.as_f64().map_or(Value::Null, |x| json!(x.round() as i64)),
        _ => v.clone(),
    }
}

/// The value of a group with no data: what the engine gives an empty sum.
fn empty(m: Metric) -> Value {
    v1_value(m, &Sums::default().metric(m, Some(0)))
}

/// Plausible's change: points for `conversion_rate` (one decimal) and
/// `bounce_rate` (none from a period without visits), else whole percent,
/// 100 from nothing and 0 from nothing to nothing.
fn v1_change(m: Metric, before: &Value, now: &Value) -> Value {
    let (Some(b), Some(a)) = (before.as_f64(), now.as_f64()) else { return Value::Null };
    match m {
        Metric::ConversionRate => json!(round(a - b, 1)),
        Metric::BounceRate if b > 0.0 => json!((a - b).round() as i64),
        Metric::BounceRate => Value::Null,
        _ if b == 0.0 => json!(if a > 0.0 { 100 } else { 0 }),
        _ => json!(((a - b) / b * 100.0).round() as i64),
    }
}

/// `{metric: value}` of the asked metrics (a hidden ordering metric left out).
fn metrics_map(q: &V1Query, values: &[Value]) -> Map<String, Value> {
    q.metrics.iter().enumerate().map(|(i, m)| (m.name().to_owned(), values.get(i).map_or_else(|| empty(*m), |v| v1_value(*m, v)))).collect()
}

fn changes(q: &V1Query, before: &Map<String, Value>, now: &Map<String, Value>) -> Map<String, Value> {
    q.metrics
        .iter()
        .map(|m| {
            let name = m.name();
            let change = match (before.get(name), now.get(name)) {
                (Some(b), Some(a)) => v1_change(*m, b, a),
                _ => Value::Null,
            };
            (name.to_owned(), change)
        })
        .collect()
}

/// `{"results": {"visitors": {"value": 12, "comparison_value": 10, "change": 20}}}`.
fn aggregate(q: &V1Query, r: &QueryResponse) -> Value {
    let row = r.results.first();
    let now = metrics_map(q, row.map_or(&[], |row| row.metrics.as_slice()));
    let before = row.and_then(|row| row.comparison.as_ref()).map(|c| metrics_map(q, &c.metrics));
    let change = before.as_ref().map(|b| changes(q, b, &now));
    let results: Map<String, Value> = now
        .iter()
        .map(|(name, value)| {
            let mut entry = json!({"value": value});
            if let (Some(before), Some(change)) = (&before, &change) {
                entry["comparison_value"] = before.get(name).cloned().unwrap_or(Value::Null);
                entry["change"] = change.get(name).cloned().unwrap_or(Value::Null);
            }
            (name.clone(), entry)
        })
        .collect();
    json!({"results": results})
}

/// `{"results": [{"date": "2026-11-01", "visitors": 3}, ...]}`: every bucket
/// of the range, those without data with the empty group's values.
fn timeseries(q: &V1Query, r: &QueryResponse) -> Value {
    let by_label: HashMap<&str, &[Value]> =
        r.results.iter().filter_map(|row| row.dimensions.first().map(|d| (d.as_str(), row.metrics.as_slice()))).collect();
    let labels = r.meta.time_labels.clone().unwrap_or_else(|| r.results.iter().filter_map(|row| row.dimensions.first().cloned()).collect());
    let results: Vec<Value> = labels
        .iter()
        .map(|label| {
            let mut bucket = Map::new();
            bucket.insert("date".into(), json!(label));
            bucket.extend(metrics_map(q, by_label.get(label.as_str()).copied().unwrap_or(&[])));
            Value::Object(bucket)
        })
        .collect();
    json!({"results": results})
}

/// `{"results": [{"source": "Google", "visitors": 3, "comparison": {...}}, ...]}`.
fn breakdown(q: &V1Query, r: &QueryResponse) -> Value {
    let results: Vec<Value> = r
        .results
        .iter()
        .map(|row| {
            let mut out = Map::new();
            for (i, key) in q.row_keys.iter().enumerate() {
                let mut value = row.dimensions.get(i).cloned().unwrap_or_default();
                // A version row: our value carries the browser's (or OS's) name, v1's does not.
                if i == 1
                    && let Some(stripped) = value.strip_prefix(&format!("{} ", row.dimensions[0]))
                {
                    value = stripped.to_owned();
                }
                out.insert(key.clone(), json!(value));
            }
            let now = metrics_map(q, &row.metrics);
            if let Some(c) = &row.comparison {
                let mut before = metrics_map(q, &c.metrics);
                let change = changes(q, &before, &now);
                before.insert("change".into(), Value::Object(change));
                out.insert("comparison".into(), Value::Object(before));
            }
            out.extend(now);
            Value::Object(out)
        })
        .collect();
    json!({"results": results})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_and_changes_follow_plausible() {
        assert_eq!(v1_value(Metric::BounceRate, &json!(42.5)), json!(43));
        assert_eq!(v1_value(Metric::VisitDuration, &json!(61)), json!(61));
        assert_eq!(v1_value(Metric::ViewsPerVisit, &json!(1.33)), json!(1.33));
        assert_eq!(v1_value(Metric::TimeOnPage, &Value::Null), Value::Null);
        assert_eq!(v1_change(Metric::Visitors, &json!(10), &json!(15)), json!(50));
        assert_eq!(v1_change(Metric::Visitors, &json!(0), &json!(3)), json!(100));
        assert_eq!(v1_change(Metric::Visitors, &json!(0), &json!(0)), json!(0));
        assert_eq!(v1_change(Metric::Visitors, &json!(3), &json!(2)), json!(-33));
        assert_eq!(v1_change(Metric::BounceRate, &json!(50), &json!(40)), json!(-10));
        assert_eq!(v1_change(Metric::BounceRate, &json!(0), &json!(40)), Value::Null);
        assert_eq!(v1_change(Metric::ConversionRate, &json!(10.0), &json!(12.55)), json!(2.6));
        assert_eq!(v1_change(Metric::TimeOnPage, &Value::Null, &json!(3)), Value::Null);
        assert_eq!(empty(Metric::Visitors), json!(0));
        assert_eq!(empty(Metric::BounceRate), json!(0));
        assert_eq!(empty(Metric::TimeOnPage), Value::Null);
    }
}
