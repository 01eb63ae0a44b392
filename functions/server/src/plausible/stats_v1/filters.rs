//! Stats API v1 filter expressions (`event:page==/blog*;visit:country==DE|FR`)
//! translated into Stats API v2 filter conditions.
//!
//! Syntax: `;` joins conditions (AND); each is `property==value` or
//! `property!=value`; `|` separates the values of an IN list (`\|` is a
//! literal `|`); `*` in a value matches any run of characters.

use serde_json::{Value, json};

use super::V1Error;

/// Properties a v1 filter may name (`event:props:<key>` aside), as Plausible lists them.
pub const V1_PROPERTIES: &[&str] = &[
    "event:page",
    "event:name",
    "event:goal",
    "event:hostname",
    "visit:source",
    "visit:channel",
    "visit:referrer",
    "visit:utm_medium",
    "visit:utm_source",
    "visit:utm_campaign",
    "visit:utm_content",
    "visit:utm_term",
    "visit:entry_page",
    "visit:exit_page",
    "visit:device",
    "visit:browser",
    "visit:browser_version",
    "visit:os",
    "visit:os_version",
    "visit:country",
    "visit:region",
    "visit:city",
];

/// Longest `event:props:` key, as Stats API v2 takes it.
const MAX_PROP_KEY: usize = 300;

/// One parsed condition: the v1 property it names and the v2 filter it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct V1Filter {
    pub property: String,
    pub filter: Value,
}

/// Whether `name` is a v1 property (for filters; breakdowns refuse `event:hostname` besides).
pub fn is_v1_property(name: &str) -> bool {
    match name.strip_prefix("event:props:") {
        Some(key) => !key.is_empty() && key.len() <= MAX_PROP_KEY,
        None => V1_PROPERTIES.contains(&name),
    }
}

/// The v2 dimension of a v1 property. Plausible's `visit:device` is the
/// screen-size class (Desktop, Laptop, Tablet, Mobile): ours is `visit:screen`.
pub fn v2_dimension(property: &str) -> &str {
    match property {
        "visit:device" => "visit:screen",
        other => other,
    }
}

/// Parses a whole `filters` parameter; empty conditions (`a==b;`) are skipped.
pub fn parse(raw: &str) -> Result<Vec<V1Filter>, V1Error> {
    raw.split(';').map(str::trim).filter(|c| !c.is_empty()).map(parse_condition).collect()
}

fn parse_condition(condition: &str) -> Result<V1Filter, V1Error> {
    let bad = |why: &str| V1Error::Filter(format!("`{condition}`: {why}"));
    let eq = condition.find("==");
    let ne = condition.find("!=");
    let (at, negated) = match (eq, ne) {
        (Some(e), Some(n)) => (e.min(n), n < e),
        (Some(e), None) => (e, false),
        (None, Some(n)) => (n, true),
        (None, None) => return Err(bad("a condition is `property==value` or `property!=value`")),
    };
    let property = condition[..at].trim();
    let raw_value = condition[at + 2..].trim();
    if raw_value.contains("==") || raw_value.contains("!=") {
        return Err(bad("a condition has one `==` or `!=`"));
    }
    if !is_v1_property(property) {
        return Err(bad(&format!("unknown property `{property}`")));
    }
    if raw_value.is_empty() {
        return Err(bad("the value is empty"));
    }
    let values = split_values(raw_value);
    if values.iter().any(String::is_empty) {
        return Err(bad("an empty value in a `|` list"));
    }
    let list = values.len() > 1;
    if negated && list {
        return Err(bad("`!=` takes one value, not a `|` list"));
    }
    if property == "visit:country" && !values.iter().all(|v| v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic())) {
        return Err(bad("countries are ISO 3166-1 alpha-2 codes such as `DE`"));
    }
    let dimension = v2_dimension(property);
    let filter = if property == "event:goal" {
        // Goals are named as the site names them (`Signup`, `Visit /register`);
        // a pageview goal's `*` is part of its name, not a wildcard here.
        if negated {
            return Err(bad("`event:goal` takes `==` only"));
        }
        json!(["is", dimension, values])
    } else if matches!(property, "visit:browser_version" | "visit:os_version") {
        // Our versions carry the name (`Chrome 142`); v1 names the version alone.
        let patterns: Vec<String> = values.iter().map(|v| format!("^.+ {}$", wildcard_body(v))).collect();
        json!([if negated { "matches_not" } else { "matches" }, dimension, patterns])
    } else if values.iter().any(|v| v.contains('*')) {
        let patterns: Vec<String> = values.iter().map(|v| format!("^{}$", wildcard_body(v))).collect();
        json!([if negated { "matches_not" } else { "matches" }, dimension, patterns])
    } else {
        json!([if negated { "is_not" } else { "is" }, dimension, values])
    };
    Ok(V1Filter { property: property.to_owned(), filter })
}

/// Values split at unescaped `|`, with `\|` made a literal `|`.
fn split_values(raw: &str) -> Vec<String> {
    let mut values = vec![String::new()];
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(v) = values.last_mut() {
                    v.push('|');
                }
            }
            '|' => values.push(String::new()),
            c => {
                if let Some(v) = values.last_mut() {
                    v.push(c);
                }
            }
        }
    }
    values.into_iter().map(|v| v.trim().to_owned()).collect()
}

/// A value as a regular expression body: `*` matches any run of characters
/// (`/` included, as in goal page patterns); everything else is literal.
fn wildcard_body(value: &str) -> String {
    value.split('*').map(regex::escape).collect::<Vec<_>>().join(".*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(raw: &str) -> Value {
        let parsed = parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(parsed.len(), 1, "{raw}");
        parsed[0].filter.clone()
    }

    fn refused(raw: &str, reason: &str) {
        match parse(raw) {
            Err(V1Error::Filter(m)) => assert!(m.contains(reason), "{raw}: `{m}` lacks `{reason}`"),
            other => panic!("{raw}: expected a filter error, got {other:?}"),
        }
    }

    #[test]
    fn equals_and_not_equals() {
        assert_eq!(one("event:page==/pricing"), json!(["is", "event:page", ["/pricing"]]));
        assert_eq!(one("visit:source!=Google"), json!(["is_not", "visit:source", ["Google"]]));
        assert_eq!(one("  visit:browser == Firefox  "), json!(["is", "visit:browser", ["Firefox"]]));
    }

    #[test]
    fn semicolons_join_conditions() {
        let parsed = parse("visit:country==DE;event:page==/a;;").unwrap();
        assert_eq!(parsed.iter().map(|f| f.property.as_str()).collect::<Vec<_>>(), ["visit:country", "event:page"]);
        assert_eq!(parsed[1].filter, json!(["is", "event:page", ["/a"]]));
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" ; ").unwrap().is_empty());
    }

    #[test]
    fn pipes_make_lists_and_escaped_pipes_are_literal() {
        assert_eq!(one("visit:country==DE|FR"), json!(["is", "visit:country", ["DE", "FR"]]));
        assert_eq!(one(r"event:props:variant==a\|b|c"), json!(["is", "event:props:variant", ["a|b", "c"]]));
        assert_eq!(one(r"event:props:variant==a\|b"), json!(["is", "event:props:variant", ["a|b"]]));
    }

    #[test]
    fn stars_are_wildcards() {
        assert_eq!(one("event:page==/blog/*"), json!(["matches", "event:page", ["^/blog/.*$"]]));
        assert_eq!(one("event:page!=/blog*"), json!(["matches_not", "event:page", ["^/blog.*$"]]));
        assert_eq!(one("event:page==/a.b/*|/c"), json!(["matches", "event:page", [r"^/a\.b/.*$", "^/c$"]]));
        assert_eq!(one("visit:entry_page==**/x?"), json!(["matches", "visit:entry_page", [r"^.*.*/x\?$"]]));
        let re = regex::Regex::new(one("event:page==/blog/*")[2][0].as_str().unwrap()).unwrap();
        assert!(re.is_match("/blog/2026/a") && !re.is_match("/blogs"));
    }

    #[test]
    fn goals_by_name_including_pageview_goals() {
        assert_eq!(one("event:goal==Signup"), json!(["is", "event:goal", ["Signup"]]));
        assert_eq!(one("event:goal==Visit /register"), json!(["is", "event:goal", ["Visit /register"]]));
        assert_eq!(one("event:goal==Signup|Visit /blog*"), json!(["is", "event:goal", ["Signup", "Visit /blog*"]]));
    }

    #[test]
    fn props_device_and_versions() {
        assert_eq!(one("event:props:plan==pro"), json!(["is", "event:props:plan", ["pro"]]));
        assert_eq!(one("visit:device==Mobile|Tablet"), json!(["is", "visit:screen", ["Mobile", "Tablet"]]));
        assert_eq!(one("visit:browser_version==142"), json!(["matches", "visit:browser_version", ["^.+ 142$"]]));
        assert_eq!(one("visit:os_version!=14.*"), json!(["matches_not", "visit:os_version", [r"^.+ 14\..*$"]]));
    }

    #[test]
    fn every_mistake_is_named() {
        refused("event:page", "property==value");
        refused("event:page=/a", "property==value");
        refused("event:page==a==b", "one `==`");
        refused("event:page==a!=b", "one `==`");
        refused("event:planet==x", "unknown property `event:planet`");
        refused("visit:screen==Mobile", "unknown property `visit:screen`");
        refused("event:props:==x", "unknown property");
        refused(&format!("event:props:{}==x", "k".repeat(301)), "unknown property");
        refused("event:page==", "empty");
        refused("event:page==a||b", "empty value");
        refused("visit:country!=DE|FR", "one value");
        refused("event:page!=/a*|/b", "one value");
        refused("visit:country==Germany", "alpha-2");
        refused("visit:country==D1", "alpha-2");
        refused("event:goal!=Signup", "`==` only");
    }

    #[test]
    fn the_first_operator_splits() {
        // `!=` before `==` is the operator; the rest would be a second one.
        refused("event:page!=a==b", "one `==`");
        assert_eq!(one("event:props:x!=y"), json!(["is_not", "event:props:x", ["y"]]));
    }
}
