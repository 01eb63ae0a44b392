//! The response in Plausible's shape, and metrics from the additive sums.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::request::Metric;

/// The additive sums of a group: what the rollups store, what the raw path
/// computes; every metric is a function of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sums {
    pub visitors: i64,
    pub visits: i64,
    pub pageviews: i64,
    pub bounces: i64,
    pub engaged_ms: i64,
    pub scroll_depth_sum: i64,
    pub engaged_pages: i64,
    pub events: i64,
    /// currency → (minor units, revenue events)
    pub revenue: BTreeMap<String, (i64, i64)>,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.visitors += o.visitors;
        self.visits += o.visits;
        self.pageviews += o.pageviews;
        self.bounces += o.bounces;
        self.engaged_ms += o.engaged_ms;
        self.scroll_depth_sum += o.scroll_depth_sum;
        self.engaged_pages += o.engaged_pages;
        self.events += o.events;
        for (cur, (amount, n)) in &o.revenue {
            let e = self.revenue.entry(cur.clone()).or_default();
            e.0 += amount;
            e.1 += n;
        }
    }

    /// The metric's value. `conversion_base` is the visitors the conversion
    /// rate is taken of (None when not asked).
    pub fn metric(&self, m: Metric, conversion_base: Option<i64>) -> Value {
        let ratio = |a: i64, b: i64| if b == 0 { None } else { Some(a as f64 / b as f64) };
        match m {
            Metric::Visitors => json!(self.visitors),
            Metric::Visits => json!(self.visits),
            Metric::Pageviews => json!(self.pageviews),
            Metric::Events => json!(self.events),
            Metric::ViewsPerVisit => json!(round(ratio(self.pageviews, self.visits).unwrap_or(0.0), 2)),
            Metric::BounceRate => json!(round(ratio(self.bounces, self.visits).unwrap_or(0.0) * 100.0, 1)),
            Metric::VisitDuration => json!(ratio(self.engaged_ms, self.visits).map_or(0, |ms| (ms / 1000.0).round() as i64)),
            Metric::TimeOnPage => json!(ratio(self.engaged_ms, self.engaged_pages).map(|ms| (ms / 1000.0).round() as i64)),
            Metric::ScrollDepth => json!(ratio(self.scroll_depth_sum, self.engaged_pages).map(|s| s.round() as i64)),
            Metric::ConversionRate => {
                json!(round(ratio(self.visitors, conversion_base.unwrap_or(0)).unwrap_or(0.0) * 100.0, 2))
            }
            Metric::TotalRevenue => self.revenue_json(|amount, _| amount as f64),
            Metric::AverageRevenue => self.revenue_json(|amount, n| if n == 0 { 0.0 } else { amount as f64 / n as f64 }),
        }
    }

    /// `{"EUR": {"value": 12.5, "currency": "EUR"}}`, in major units.
    fn revenue_json(&self, minor: impl Fn(i64, i64) -> f64) -> Value {
        let map: serde_json::Map<String, Value> = self
            .revenue
            .iter()
            .map(|(cur, (amount, n))| {
                let exponent = shared::beacon::Currency::try_from(cur.clone()).map_or(2, |c| c.exponent());
                let value = round(minor(*amount, *n) / 10f64.powi(exponent as i32), exponent.max(2) as i32);
                (cur.clone(), json!({"value": value, "currency": cur}))
            })
            .collect();
        Value::Object(map)
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Change against the comparison: percent for counts and times, points for
/// rates, none for revenue (one value per currency) or from zero.
pub fn change(m: Metric, now: &Value, before: &Value) -> Value {
    let (Some(a), Some(b)) = (now.as_f64(), before.as_f64()) else { return Value::Null };
    match m {
        Metric::BounceRate | Metric::ConversionRate => json!(round(a - b, 1)),
        _ if b == 0.0 => {
            if a == 0.0 {
                json!(0)
            } else {
                Value::Null
            }
        }
        _ => json!(((a - b) / b * 100.0).round() as i64),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResponse {
    pub results: Vec<ResultRow>,
    pub meta: Meta,
    /// The query as understood: names as given, the date range resolved.
    pub query: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    pub metrics: Vec<Value>,
    pub dimensions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComparisonRow {
    pub dimensions: Vec<String>,
    pub metrics: Vec<Value>,
    pub change: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison_date_range: Option<[String; 2]>,
    /// Where the numbers came from: `rollups`, `raw` or `mixed`.
    pub source: String,
    /// With `include.imports`: whether imported data is in the numbers
    /// (Plausible's names), why not, and a warning when the query's shape
    /// is one imported data cannot answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imports_included: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imports_skip_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imports_warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_of_nothing_are_zero_or_null_not_nan() {
        let s = Sums::default();
        assert_eq!(s.metric(Metric::BounceRate, None), json!(0.0));
        assert_eq!(s.metric(Metric::TimeOnPage, None), Value::Null);
        assert_eq!(s.metric(Metric::ConversionRate, Some(0)), json!(0.0));
        assert_eq!(s.metric(Metric::TotalRevenue, None), json!({}));
    }

    #[test]
    fn revenue_is_in_major_units_per_currency() {
        let mut s = Sums::default();
        s.revenue.insert("EUR".into(), (1250, 2));
        s.revenue.insert("JPY".into(), (500, 1));
        assert_eq!(s.metric(Metric::TotalRevenue, None), json!({"EUR": {"value": 12.5, "currency": "EUR"}, "JPY": {"value": 500.0, "currency": "JPY"}}));
        assert_eq!(s.metric(Metric::AverageRevenue, None)["EUR"]["value"], json!(6.25));
    }

    #[test]
    fn changes() {
        assert_eq!(change(Metric::Visitors, &json!(150), &json!(100)), json!(50));
        assert_eq!(change(Metric::Visitors, &json!(5), &json!(0)), Value::Null);
        assert_eq!(change(Metric::BounceRate, &json!(40.0), &json!(50.0)), json!(-10.0));
    }
}
