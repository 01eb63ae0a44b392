//! Google Analytics 4: the Data API's report JSON (runReport, batchRunReports,
//! or a JSON array of reports; one report per dataset, named by its
//! dimensions as Plausible's GA4 import fetches them) and the BigQuery event
//! export as newline-delimited JSON (one event per line, summed per day).
//! Values are mapped as Plausible maps them (research §6).

use serde_json::Value;

use super::aggregate::{Hit, aggregate};
use super::{ImportError, RowSet, Table, capitalise, decode_text, parse_count, parse_day};

/// Values GA4 uses for "no value".
const NONE_VALUES: &[&str] = &["(none)", "(not set)", "(not provided)", "(other)", "(data not available)"];

/// Events GA4 sends about the visit itself, not custom events.
const NOT_CUSTOM: &[&str] = &["page_view", "session_start", "first_visit", "user_engagement", "scroll"];

fn json_error(file: &str, e: &serde_json::Error, line_offset: u64) -> ImportError {
    let line = if line_offset > 0 { line_offset } else { e.line() as u64 };
    ImportError::parse(file, line, Some(e.column() as u64), format!("not valid JSON ({e})"))
}

fn record_error(file: &str, record: String, reason: impl Into<String>) -> ImportError {
    ImportError::Archive { file: file.to_owned(), reason: format!("{record}: {}", reason.into()) }
}

fn none_to_empty(v: &str) -> &str {
    if NONE_VALUES.contains(&v.trim()) { "" } else { v.trim() }
}

// ---- Data API reports ----

pub fn parse_report(file: &str, bytes: &[u8]) -> Result<RowSet, ImportError> {
    let text = decode_text(file, bytes)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| json_error(file, &e, 0))?;
    let reports: Vec<&Value> = match &value {
        Value::Array(list) => {
            list.iter().flat_map(|v| v.get("reports").and_then(Value::as_array).map_or(vec![v], |r| r.iter().collect())).collect()
        }
        Value::Object(o) => match o.get("reports").and_then(Value::as_array) {
            Some(list) => list.iter().collect(),
            None => vec![&value],
        },
        _ => return Err(record_error(file, "the document".into(), "a runReport or batchRunReports response is a JSON object")),
    };
    let mut set = RowSet::default();
    for (i, report) in reports.iter().enumerate() {
        parse_one_report(file, i + 1, report, &mut set)?;
    }
    Ok(set)
}

fn header_names(report: &Value, key: &str) -> Vec<String> {
    report
        .get(key)
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |h| h.iter().map(|x| x.get("name").and_then(Value::as_str).unwrap_or_default().to_owned()).collect())
}

/// Which imported table a report fills, by its dimensions.
fn dataset(dims: &[String]) -> Option<Table> {
    let has = |d: &str| dims.iter().any(|x| x == d);
    Some(if has("sessionSource") || has("sessionSourceMedium") {
        Table::Sources
    } else if has("pagePath") || has("pagePathPlusQueryString") {
        Table::Pages
    } else if has("landingPage") || has("landingPagePlusQueryString") {
        Table::EntryPages
    } else if has("eventName") {
        Table::CustomEvents
    } else if has("countryId") || has("country") {
        Table::Locations
    } else if has("deviceCategory") {
        Table::Devices
    } else if has("browser") {
        Table::Browsers
    } else if has("operatingSystem") {
        Table::OperatingSystems
    } else if dims.len() == 1 {
        Table::Visitors
    } else {
        return None;
    })
}

fn parse_one_report(file: &str, n: usize, report: &Value, set: &mut RowSet) -> Result<(), ImportError> {
    let dims = header_names(report, "dimensionHeaders");
    let metrics = header_names(report, "metricHeaders");
    let Some(date_at) = dims.iter().position(|d| d == "date") else {
        return Err(record_error(file, format!("report {n}"), format!("no `date` dimension (dimensions: {})", dims.join(", "))));
    };
    let table = dataset(&dims).ok_or_else(|| {
        record_error(
            file,
            format!("report {n}"),
            format!("dimensions {} are none of the supported reports (see README \"Imports\")", dims.join(", ")),
        )
    })?;
    let rows = match report.get("rows") {
        None => return Ok(()), // GA4 leaves `rows` out when there are none
        Some(Value::Array(rows)) => rows,
        Some(_) => return Err(record_error(file, format!("report {n}"), "`rows` is not a list")),
    };
    for (r, row) in rows.iter().enumerate() {
        let at = || format!("report {n}, row {}", r + 1);
        let values = |key: &str, want: usize| -> Result<Vec<&str>, ImportError> {
            let list = row.get(key).and_then(Value::as_array).ok_or_else(|| record_error(file, at(), format!("no `{key}`")))?;
            if list.len() != want {
                return Err(record_error(file, at(), format!("{} `{key}` for {want} headers", list.len())));
            }
            list.iter()
                .map(|v| {
                    v.get("value")
                        .and_then(Value::as_str)
                        .ok_or_else(|| record_error(file, at(), format!("a `{key}` without a string `value`")))
                })
                .collect()
        };
        let dv = values("dimensionValues", dims.len())?;
        let mv = values("metricValues", metrics.len())?;
        let dim = |name: &str| dims.iter().position(|d| d == name).map_or("", |i| none_to_empty(dv[i]));
        let metric = |name: &str| -> Result<i64, ImportError> {
            match metrics.iter().position(|m| m == name) {
                None => Ok(0),
                Some(i) => {
                    parse_count(mv[i]).ok_or_else(|| record_error(file, at(), format!("metric `{name}` is `{}`, not a number", mv[i])))
                }
            }
        };
        let raw_date = dv[date_at];
        if NONE_VALUES.contains(&raw_date) {
            set.warn(format!("rows dated {raw_date} were skipped"));
            continue;
        }
        let date = parse_day(raw_date).ok_or_else(|| record_error(file, at(), format!("date `{raw_date}` is not YYYYMMDD")))?;
        let (visitors, pageviews, visits, duration) =
            (metric("totalUsers")?, metric("screenPageViews")?, metric("sessions")?, metric("userEngagementDuration")?);
        let bounces = if metrics.iter().any(|m| m == "bounces") {
            metric("bounces")?
        } else if metrics.iter().any(|m| m == "engagedSessions") {
            (visits - metric("engagedSessions")?).max(0)
        } else {
            0
        };
        let standard = vec![visitors, visits, duration, bounces, pageviews];
        match table {
            Table::Visitors => set.add(table, date, vec![], standard),
            Table::Sources => {
                let (mut source, mut medium) = (dim("sessionSource").to_owned(), dim("sessionMedium").to_owned());
                if let Some((s, m)) = dim("sessionSourceMedium").split_once(" / ") {
                    (source, medium) = (none_to_empty(s).to_owned(), none_to_empty(m).to_owned());
                }
                let dims = vec![
                    source_name(&source),
                    String::new(),
                    String::new(),
                    medium,
                    dim("sessionCampaignName").to_owned(),
                    dim("sessionManualAdContent").to_owned(),
                    dim("sessionGoogleAdsKeyword").to_owned(),
                    dim("sessionDefaultChannelGroup").to_owned(),
                ];
                set.add(table, date, dims, standard);
            }
            Table::Pages => {
                let page = path_of(if dims.iter().any(|d| d == "pagePath") { dim("pagePath") } else { dim("pagePathPlusQueryString") });
                set.add(table, date, vec![host_of(dim("hostName")), page], vec![visitors, visits, pageviews, 0, 0, duration, 0]);
            }
            Table::EntryPages => {
                let page =
                    path_of(if dims.iter().any(|d| d == "landingPage") { dim("landingPage") } else { dim("landingPagePlusQueryString") });
                set.add(table, date, vec![page], vec![visitors, visits, duration, bounces, pageviews]);
            }
            Table::CustomEvents => {
                let name = dim("eventName");
                if NOT_CUSTOM.contains(&name) {
                    continue;
                }
                set.add(
                    table,
                    date,
                    vec![event_name(name).to_owned(), dim("linkUrl").to_owned(), String::new()],
                    vec![visitors, metric("eventCount")?],
                );
            }
            Table::Locations => {
                let country = if dims.iter().any(|d| d == "countryId") { dim("countryId") } else { dim("country") };
                let code = country_code(country, set);
                set.add(table, date, vec![code, dim("region").to_owned(), dim("city").to_owned()], standard);
            }
            Table::Devices => set.add(table, date, vec![capitalise(dim("deviceCategory"))], standard),
            Table::Browsers => {
                set.add(table, date, vec![browser_name(dim("browser")).to_owned(), dim("browserVersion").to_owned()], standard)
            }
            Table::OperatingSystems => {
                set.add(table, date, vec![os_name(dim("operatingSystem")).to_owned(), dim("operatingSystemVersion").to_owned()], standard)
            }
            Table::ExitPages => unreachable!("GA4 has no exit pages report"),
        }
    }
    Ok(())
}

/// `(direct)` is no source; the big engines by name; other sources as the
/// referrer's host, without `www.`.
pub(super) fn source_name(source: &str) -> String {
    let source = source.trim().to_lowercase();
    if source.is_empty() || source == "(direct)" {
        return String::new();
    }
    let host = host_of(&source);
    match host.split('.').next().unwrap_or("") {
        "google" => "Google".into(),
        "bing" => "Bing".into(),
        "duckduckgo" => "DuckDuckGo".into(),
        _ => host,
    }
}

fn host_of(value: &str) -> String {
    let v = value.trim();
    let host = url::Url::parse(v)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| v.split('/').next().unwrap_or("").to_owned());
    host.strip_prefix("www.").unwrap_or(&host).to_lowercase()
}

/// The path of a page value: GA4 may give a whole URL or a path with its query.
fn path_of(value: &str) -> String {
    let v = value.trim();
    if let Ok(u) = url::Url::parse(v) {
        return u.path().to_owned();
    }
    let path = v.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        String::new()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

fn event_name(name: &str) -> &str {
    match name {
        "click" => "Outbound Link: Click",
        "file_download" => "File Download",
        other => other,
    }
}

fn browser_name(b: &str) -> &str {
    match b {
        "Android Webview" | "Safari (in-app)" | "Mozilla Compatible Agent" => "Mobile App",
        other => other,
    }
}

fn os_name(os: &str) -> &str {
    match os {
        "Macintosh" => "Mac",
        "Linux" => "GNU/Linux",
        other => other,
    }
}

/// GA4's English country names (BigQuery's `geo.country`) as alpha-2;
/// a value already two letters long is taken as it is.
const COUNTRIES: &str = "Afghanistan:AF|Albania:AL|Algeria:DZ|Andorra:AD|Angola:AO|Argentina:AR|Armenia:AM|Australia:AU|Austria:AT|\
Azerbaijan:AZ|Bahrain:BH|Bangladesh:BD|Belarus:BY|Belgium:BE|Bolivia:BO|Bosnia & Herzegovina:BA|Brazil:BR|Bulgaria:BG|Cambodia:KH|\
Cameroon:CM|Canada:CA|Chile:CL|China:CN|Colombia:CO|Costa Rica:CR|Croatia:HR|Cuba:CU|Cyprus:CY|Czechia:CZ|Czech Republic:CZ|\
Denmark:DK|Dominican Republic:DO|Ecuador:EC|Egypt:EG|El Salvador:SV|Estonia:EE|Ethiopia:ET|Finland:FI|France:FR|Georgia:GE|\
Germany:DE|Ghana:GH|Greece:GR|Guatemala:GT|Honduras:HN|Hong Kong:HK|Hungary:HU|Iceland:IS|India:IN|Indonesia:ID|Iran:IR|Iraq:IQ|\
Ireland:IE|Israel:IL|Italy:IT|Jamaica:JM|Japan:JP|Jordan:JO|Kazakhstan:KZ|Kenya:KE|Kuwait:KW|Latvia:LV|Lebanon:LB|Lithuania:LT|\
Luxembourg:LU|Macao:MO|Malaysia:MY|Malta:MT|Mexico:MX|Moldova:MD|Monaco:MC|Mongolia:MN|Montenegro:ME|Morocco:MA|Myanmar (Burma):MM|\
Nepal:NP|Netherlands:NL|New Zealand:NZ|Nicaragua:NI|Nigeria:NG|North Macedonia:MK|Norway:NO|Oman:OM|Pakistan:PK|Panama:PA|\
Paraguay:PY|Peru:PE|Philippines:PH|Poland:PL|Portugal:PT|Puerto Rico:PR|Qatar:QA|Romania:RO|Russia:RU|Saudi Arabia:SA|Senegal:SN|\
Serbia:RS|Singapore:SG|Slovakia:SK|Slovenia:SI|South Africa:ZA|South Korea:KR|Spain:ES|Sri Lanka:LK|Sweden:SE|Switzerland:CH|\
Taiwan:TW|Tanzania:TZ|Thailand:TH|Tunisia:TN|Turkey:TR|Türkiye:TR|Uganda:UG|Ukraine:UA|United Arab Emirates:AE|United Kingdom:GB|\
United States:US|Uruguay:UY|Uzbekistan:UZ|Venezuela:VE|Vietnam:VN|Yemen:YE|Zambia:ZM|Zimbabwe:ZW";

fn country_code(value: &str, set: &mut RowSet) -> String {
    let v = value.trim();
    if v.len() == 2 && v.chars().all(|c| c.is_ascii_alphabetic()) {
        return v.to_uppercase();
    }
    if v.is_empty() {
        return String::new();
    }
    match COUNTRIES.split('|').find_map(|pair| pair.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case(v))) {
        Some((_, code)) => code.to_owned(),
        None => {
            set.warn(format!("country `{v}` has no known ISO code; its visits count without a country"));
            String::new()
        }
    }
}

// ---- BigQuery event export ----

/// One `event_params` value: whichever of the typed fields is set.
fn param<'a>(event: &'a Value, key: &str) -> Option<&'a Value> {
    event.get("event_params")?.as_array()?.iter().find(|p| p.get("key").and_then(Value::as_str) == Some(key)).and_then(|p| {
        let v = p.get("value")?;
        ["string_value", "int_value", "double_value", "float_value"].iter().find_map(|k| v.get(*k).filter(|x| !x.is_null()))
    })
}

fn as_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => none_to_empty(s).to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn as_int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

fn path(event: &Value, dotted: &str) -> String {
    as_text(dotted.split('.').try_fold(event, |v, k| v.get(k)))
}

pub fn parse_bigquery(file: &str, bytes: &[u8]) -> Result<RowSet, ImportError> {
    let text = decode_text(file, bytes)?;
    let mut hits = Vec::new();
    let mut skipped = 0;
    // Warnings met while reading, kept for the summed set.
    let mut notes = RowSet::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line).map_err(|e| json_error(file, &e, line_no))?;
        let bad = |reason: String| ImportError::parse(file, line_no, None, reason);
        let raw_date = path(&event, "event_date");
        let date = parse_day(&raw_date).ok_or_else(|| bad(format!("event_date `{raw_date}` is not YYYYMMDD")))?;
        let at_us = as_int(event.get("event_timestamp")).ok_or_else(|| bad("event_timestamp is missing or not a number".into()))?;
        let name = path(&event, "event_name");
        let visitor = path(&event, "user_pseudo_id");
        if name.is_empty() || visitor.is_empty() {
            return Err(bad("event_name and user_pseudo_id are needed".into()));
        }
        let session = as_text(param(&event, "ga_session_id"));
        let location = as_text(param(&event, "page_location"));
        let url = url::Url::parse(&location).ok();
        let referrer = as_text(param(&event, "page_referrer"));
        let engagement_ms = as_int(param(&event, "engagement_time_msec")).unwrap_or(0);
        let manual = |k: &str, p: &str| {
            let v = path(&event, &format!("collected_traffic_source.{k}"));
            if v.is_empty() { as_text(param(&event, p)) } else { v }
        };
        let mut source = manual("manual_source", "source");
        if source.is_empty() && !referrer.is_empty() {
            let host = host_of(&referrer);
            if url.as_ref().and_then(|u| u.host_str()).map(|h| h.strip_prefix("www.").unwrap_or(h)) != Some(host.as_str()) {
                source = host;
            }
        }
        let event_name = match name.as_str() {
            "page_view" => None,
            "click" => Some("Outbound Link: Click".to_owned()),
            "file_download" => Some("File Download".to_owned()),
            n if NOT_CUSTOM.contains(&n) => {
                // Not an event of its own, but its engaged time is the visit's.
                skipped += 1;
                if engagement_ms <= 0 {
                    continue;
                }
                Some(String::new()) // see aggregate::Hit::event_name
            }
            n => Some(n.to_owned()),
        };
        hits.push(Hit {
            date,
            at_ms: at_us / 1000,
            visit: format!("{visitor}.{session}"),
            visitor,
            event_name,
            hostname: url
                .as_ref()
                .and_then(|u| u.host_str())
                .map_or_else(|| path(&event, "device.web_info.hostname"), |h| h.strip_prefix("www.").unwrap_or(h).to_owned()),
            page: url.as_ref().map_or_else(String::new, |u| u.path().to_owned()),
            link_url: as_text(param(&event, "link_url")),
            engagement_ms,
            source: source_name(&source),
            referrer: String::new(),
            utm_source: String::new(),
            utm_medium: manual("manual_medium", "medium"),
            utm_campaign: manual("manual_campaign_name", "campaign"),
            utm_content: String::new(),
            utm_term: as_text(param(&event, "term")),
            device: capitalise(&path(&event, "device.category")),
            browser: browser_name(&path(&event, "device.web_info.browser")).to_owned(),
            browser_version: path(&event, "device.web_info.browser_version"),
            os: os_name(&path(&event, "device.operating_system")).to_owned(),
            os_version: path(&event, "device.operating_system_version"),
            country: String::new(),
            region: path(&event, "geo.region"),
            city: path(&event, "geo.city"),
        });
        if let Some(h) = hits.last_mut() {
            h.country = country_code(&path(&event, "geo.country"), &mut notes);
        }
    }
    let mut set = aggregate(hits);
    for w in notes.warnings {
        set.warn(w);
    }
    if skipped > 0 {
        set.warn(format!("{skipped} session_start/first_visit/user_engagement/scroll events counted only for engaged time"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISITORS: &str = r#"{"dimensionHeaders":[{"name":"date"}],
      "metricHeaders":[{"name":"totalUsers","type":"TYPE_INTEGER"},{"name":"screenPageViews","type":"TYPE_INTEGER"},{"name":"bounces","type":"TYPE_INTEGER"},
                       {"name":"sessions","type":"TYPE_INTEGER"},{"name":"userEngagementDuration","type":"TYPE_SECONDS"}],
      "rows":[{"dimensionValues":[{"value":"20240131"}],"metricValues":[{"value":"42"},{"value":"100"},{"value":"10"},{"value":"50"},{"value":"1234.6"}]},
              {"dimensionValues":[{"value":"(other)"}],"metricValues":[{"value":"1"},{"value":"1"},{"value":"1"},{"value":"1"},{"value":"1"}]}],
      "rowCount":2,"kind":"analyticsData#runReport"}"#;

    #[test]
    fn a_run_report_and_a_batch_read_with_plausibles_mapping() {
        let set = parse_report("visitors.json", VISITORS.as_bytes()).unwrap();
        assert_eq!(set.total(Table::Visitors, "visitors"), 42);
        assert_eq!(set.total(Table::Visitors, "visit_duration"), 1235);
        assert_eq!(set.warnings, vec!["rows dated (other) were skipped".to_owned()]);
        let batch = r#"{"kind":"analyticsData#batchRunReports","reports":[
          {"dimensionHeaders":[{"name":"date"},{"name":"sessionSource"},{"name":"sessionMedium"}],
           "metricHeaders":[{"name":"totalUsers"},{"name":"sessions"}],
           "rows":[{"dimensionValues":[{"value":"20240101"},{"value":"google"},{"value":"organic"}],"metricValues":[{"value":"3"},{"value":"4"}]},
                   {"dimensionValues":[{"value":"20240101"},{"value":"(direct)"},{"value":"(none)"}],"metricValues":[{"value":"2"},{"value":"2"}]},
                   {"dimensionValues":[{"value":"20240101"},{"value":"www.news.example"},{"value":"referral"}],"metricValues":[{"value":"1"},{"value":"1"}]}]},
          {"dimensionHeaders":[{"name":"date"},{"name":"browser"}],"metricHeaders":[{"name":"totalUsers"}],
           "rows":[{"dimensionValues":[{"value":"20240101"},{"value":"Safari (in-app)"}],"metricValues":[{"value":"5"}]}]},
          {"dimensionHeaders":[{"name":"date"},{"name":"eventName"},{"name":"linkUrl"}],"metricHeaders":[{"name":"totalUsers"},{"name":"eventCount"}],
           "rows":[{"dimensionValues":[{"value":"20240101"},{"value":"click"},{"value":"https://out.example/"}],"metricValues":[{"value":"2"},{"value":"3"}]},
                   {"dimensionValues":[{"value":"20240101"},{"value":"page_view"},{"value":""}],"metricValues":[{"value":"9"},{"value":"9"}]}]},
          {"dimensionHeaders":[{"name":"date"},{"name":"deviceCategory"}],"metricHeaders":[{"name":"totalUsers"}]}]}"#;
        let set = parse_report("batch.json", batch.as_bytes()).unwrap();
        let sources: Vec<(String, String)> =
            set.rows().filter(|r| r.table == Table::Sources).map(|r| (r.dims[0].clone(), r.dims[3].clone())).collect();
        assert_eq!(
            sources,
            vec![(String::new(), String::new()), ("Google".into(), "organic".into()), ("news.example".into(), "referral".into())]
        );
        assert_eq!(set.rows().find(|r| r.table == Table::Browsers).unwrap().dims[0], "Mobile App");
        let events: Vec<_> = set.rows().filter(|r| r.table == Table::CustomEvents).collect();
        assert_eq!((events.len(), events[0].dims[0].as_str(), events[0].metrics[1]), (1, "Outbound Link: Click", 3));
    }

    #[test]
    fn broken_reports_name_the_place() {
        let e = parse_report("r.json", b"{\"rows\": [\n  {\"dimensionValues\": }\n]}").unwrap_err().to_string();
        assert!(e.starts_with("r.json, line 2, column 23: not valid JSON"), "{e}");
        let bad = VISITORS.replace("\"42\"", "\"lots\"");
        let e = parse_report("r.json", bad.as_bytes()).unwrap_err().to_string();
        assert_eq!(e, "r.json: report 1, row 1: metric `totalUsers` is `lots`, not a number");
        let e = parse_report("r.json", br#"{"dimensionHeaders":[{"name":"pagePath"}]}"#).unwrap_err().to_string();
        assert!(e.contains("no `date` dimension"), "{e}");
    }

    const EVENTS: &str = r#"{"event_date":"20240301","event_timestamp":"1709287200000000","event_name":"page_view","user_pseudo_id":"u1","event_params":[{"key":"ga_session_id","value":{"int_value":"111"}},{"key":"page_location","value":{"string_value":"https://www.example.com/?utm=x"}},{"key":"page_referrer","value":{"string_value":"https://www.google.com/"}}],"device":{"category":"desktop","operating_system":"Macintosh","operating_system_version":"14","web_info":{"browser":"Chrome","browser_version":"122"}},"geo":{"country":"Germany","region":"Berlin","city":"Berlin"}}
{"event_date":"20240301","event_timestamp":1709287260000000,"event_name":"user_engagement","user_pseudo_id":"u1","event_params":[{"key":"ga_session_id","value":{"int_value":111}},{"key":"engagement_time_msec","value":{"int_value":"45000"}}],"device":{"category":"desktop"},"geo":{"country":"Germany"}}
{"event_date":"20240301","event_timestamp":1709287270000000,"event_name":"file_download","user_pseudo_id":"u1","event_params":[{"key":"ga_session_id","value":{"int_value":111}},{"key":"page_location","value":{"string_value":"https://example.com/docs"}},{"key":"link_url","value":{"string_value":"https://example.com/a.pdf"}}],"device":{"category":"desktop"},"geo":{"country":"Germany"}}

{"event_date":"20240302","event_timestamp":1709373600000000,"event_name":"page_view","user_pseudo_id":"u2","event_params":[{"key":"ga_session_id","value":{"int_value":222}},{"key":"page_location","value":{"string_value":"https://example.com/blog"}}],"device":{"category":"mobile","operating_system":"iOS"},"geo":{"country":"Atlantis"}}
"#;

    #[test]
    fn bigquery_events_sum_per_day() {
        let set = parse_bigquery("events.ndjson", EVENTS.as_bytes()).unwrap();
        assert_eq!(set.total(Table::Visitors, "visitors"), 2);
        assert_eq!(set.total(Table::Visitors, "visits"), 2);
        assert_eq!(set.total(Table::Visitors, "pageviews"), 2);
        assert_eq!(set.total(Table::Visitors, "bounces"), 1, "a download is an interaction");
        assert_eq!(set.total(Table::Visitors, "visit_duration"), 45);
        let download = set.rows().find(|r| r.table == Table::CustomEvents).unwrap();
        assert_eq!(download.dims[..2], ["File Download".to_owned(), "https://example.com/a.pdf".to_owned()]);
        let src = set.rows().find(|r| r.table == Table::Sources && r.dims[0] == "Google");
        assert!(src.is_some(), "the referrer's engine is the source");
        let de = set.rows().find(|r| r.table == Table::Locations && r.dims[0] == "DE").unwrap();
        assert_eq!(de.metrics[0], 1);
        assert_eq!(
            set.rows().find(|r| r.table == Table::OperatingSystems && r.dims[0] == "Mac").map(|r| r.dims[1].clone()),
            Some("14".into())
        );
        assert!(set.warnings.iter().any(|w| w.contains("Atlantis")), "{:?}", set.warnings);
        let broken = EVENTS.replacen("\"event_date\":\"20240302\"", "\"event_date\":20240302,", 1);
        let e = parse_bigquery("events.ndjson", broken.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("events.ndjson, line 5, column"), "{e}");
    }
}
