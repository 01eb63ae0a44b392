//! A report and an alert as mail: the plain text, and an HTML part that mail
//! clients render as sent: tables with inline styles, a bar chart of daily
//! visitors made of table cells, no script, no stylesheet, no image.

use std::fmt::Write;

use serde_json::Value;

use super::figures::{Figure, Report, TopRow};
use super::token::Kind;
use crate::mail::html::escape;

const BAR: &str = "#4f46e5";
const MUTED: &str = "#6b7280";
/// Height of the tallest bar, in pixels.
const CHART_HEIGHT: i64 = 80;
/// Width of the text version's longest bar, in characters.
const TEXT_BAR: i64 = 30;

fn label(metric: &str) -> &'static str {
    match metric {
        "visitors" => "Visitors",
        "pageviews" => "Pageviews",
        "bounce_rate" => "Bounce rate",
        "visit_duration" => "Visit duration",
        _ => "Metric",
    }
}

/// `42`, `40.5 %`, `1m 05s`; `–` for no value.
pub fn value(metric: &str, v: &Value) -> String {
    match (metric, v.as_f64()) {
        (_, None) => "–".into(),
        ("bounce_rate", Some(x)) => format!("{x:.1} %"),
        ("visit_duration", Some(x)) => {
            let s = x.round() as i64;
            if s < 60 { format!("{s}s") } else { format!("{}m {:02}s", s / 60, s % 60) }
        }
        (_, Some(x)) => format!("{}", x.round() as i64),
    }
}

/// `+20 %`, `-5.0 pt` (the bounce rate changes in points), `new` from zero.
pub fn change(metric: &str, c: &Value) -> String {
    match (metric, c.as_f64()) {
        (_, None) => "new".into(),
        ("bounce_rate", Some(x)) => format!("{x:+.1} pt"),
        (_, Some(x)) => format!("{:+} %", x.round() as i64),
    }
}

fn figure_line(f: &Figure) -> String {
    format!(
        "{}: {} (previous {}, change {})",
        label(f.metric),
        value(f.metric, &f.value),
        value(f.metric, &f.previous),
        change(f.metric, &f.change)
    )
}

fn dashboard(public_url: &str, domain: &str) -> String {
    format!("{}/#/site/{domain}", public_url.trim_end_matches('/'))
}

fn text_top(out: &mut String, title: &str, rows: &[TopRow], second: Option<&str>) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for r in rows {
        match (r.second, second) {
            (Some(n), Some(what)) => drop(writeln!(out, "  {}: {} visitors, {n} {what}", r.name, r.visitors)),
            _ => drop(writeln!(out, "  {}: {} visitors", r.name, r.visitors)),
        }
    }
}

/// (plain text, HTML) of a report.
pub fn report(domain: &str, r: &Report, public_url: &str, unsubscribe: &str) -> (String, String) {
    let what = r.period.frequency.as_str();
    let mut text = format!("{domain}: {what} report, {}\nCompared with {}\n\n", r.period.label(), r.previous.label());
    for f in &r.figures {
        let _ = writeln!(text, "{}", figure_line(f));
    }
    let max = r.daily_visitors.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let _ = writeln!(text, "\nVisitors per day");
    for (day, n) in &r.daily_visitors {
        let _ = writeln!(text, "  {day} {:<width$} {n}", "#".repeat((n * TEXT_BAR / max) as usize), width = TEXT_BAR as usize);
    }
    text_top(&mut text, "Top pages", &r.top_pages, Some("pageviews"));
    text_top(&mut text, "Top sources", &r.top_sources, None);
    text_top(&mut text, "Top goals", &r.top_goals, Some("conversions"));
    let _ = write!(
        text,
        "\nOpen the dashboard: {}\n\nYou get this because you asked for {what} reports of {domain}. Stop them: {unsubscribe}\n",
        dashboard(public_url, domain)
    );
    (text, report_html(domain, r, public_url, unsubscribe))
}

fn report_html(domain: &str, r: &Report, public_url: &str, unsubscribe: &str) -> String {
    let what = r.period.frequency.as_str();
    let mut body = format!(
        r#"<h1 style="font-size:20px;margin:0 0 4px">{} &middot; {what} report</h1><p style="margin:0 0 16px;color:{MUTED}">{} &middot; compared with {}</p>"#,
        escape(domain),
        escape(&r.period.label()),
        escape(&r.previous.label())
    );
    body.push_str(
        r#"<table role="presentation" cellpadding="0" cellspacing="0" style="border-collapse:collapse;width:100%;margin-bottom:16px"><tr>"#,
    );
    for f in &r.figures {
        let _ = write!(
            body,
            r#"<td style="padding:8px;border:1px solid #e5e7eb;vertical-align:top"><div style="font-size:12px;color:{MUTED}">{}</div><div style="font-size:22px;font-weight:bold">{}</div><div style="font-size:12px;color:{MUTED}">{} (previous {})</div></td>"#,
            label(f.metric),
            escape(&value(f.metric, &f.value)),
            escape(&change(f.metric, &f.change)),
            escape(&value(f.metric, &f.previous))
        );
    }
    body.push_str("</tr></table>");
    body.push_str(&chart(&r.daily_visitors));
    html_top(&mut body, "Top pages", &r.top_pages, Some("Pageviews"));
    html_top(&mut body, "Top sources", &r.top_sources, None);
    html_top(&mut body, "Top goals", &r.top_goals, Some("Conversions"));
    let _ = write!(
        body,
        r#"<p><a href="{}">Open the dashboard</a></p><p style="font-size:12px;color:{MUTED}">You get this because you asked for {what} reports of {}. <a href="{}">Unsubscribe</a></p>"#,
        escape(&dashboard(public_url, domain)),
        escape(domain),
        escape(unsubscribe)
    );
    page(&body)
}

/// Daily visitors as bars: one bottom-aligned cell per day, its height in
/// pixels (mail clients drop SVG, canvas and scripts; tables they keep).
fn chart(days: &[(String, i64)]) -> String {
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let mut out = String::from(
        r#"<h2 style="font-size:15px;margin:16px 0 8px">Visitors per day</h2><table role="presentation" cellpadding="0" cellspacing="0" style="border-collapse:collapse"><tr>"#,
    );
    for (day, n) in days {
        // At least 1 px, so a day with visitors is never invisible.
        let h = if *n == 0 { 0 } else { (n * CHART_HEIGHT / max).max(1) };
        let _ = write!(
            out,
            r#"<td title="{day}: {n}" style="vertical-align:bottom;height:{CHART_HEIGHT}px;padding:0 1px"><div style="width:12px;height:{h}px;background:{BAR};font-size:0;line-height:0">&nbsp;</div></td>"#,
            day = escape(day)
        );
    }
    out.push_str("</tr><tr>");
    for (day, n) in days {
        // The day of the month under each bar, and the count for those who cannot see bars.
        let dom = day.rsplit('-').next().unwrap_or(day);
        let _ = write!(out, r#"<td style="font-size:9px;color:{MUTED};text-align:center">{}<br>{n}</td>"#, escape(dom));
    }
    out.push_str("</tr></table>");
    out
}

fn html_top(out: &mut String, title: &str, rows: &[TopRow], second: Option<&str>) {
    let _ = write!(
        out,
        r#"<h2 style="font-size:15px;margin:16px 0 8px">{title}</h2><table role="presentation" cellpadding="4" cellspacing="0" style="border-collapse:collapse;width:100%">"#
    );
    if rows.is_empty() {
        let _ = write!(out, r#"<tr><td style="color:{MUTED}">None in this period</td></tr>"#);
    }
    for r in rows {
        let _ = write!(
            out,
            r#"<tr><td style="border-bottom:1px solid #e5e7eb">{}</td><td style="border-bottom:1px solid #e5e7eb;text-align:right">{} visitors</td>"#,
            escape(&r.name),
            r.visitors
        );
        if let (Some(n), Some(what)) = (r.second, second) {
            let _ = write!(out, r#"<td style="border-bottom:1px solid #e5e7eb;text-align:right">{n} {}</td>"#, what.to_lowercase());
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn page(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family: sans-serif; line-height: 1.5; color: #111827; max-width: 640px\">\n{body}\n</body></html>\n"
    )
}

/// (plain text, HTML) of a traffic-spike alert.
pub fn spike(domain: &str, visitors: i64, threshold: i32, public_url: &str, unsubscribe: &str) -> (String, String) {
    let link = dashboard(public_url, domain);
    let text = format!(
        "{domain} has {visitors} current visitors (in the last 5 minutes), at or above your alert threshold of {threshold}.\n\n\
         See it live: {link}\n\nYou get at most one alert an hour. Stop these alerts: {unsubscribe}\n"
    );
    let html = page(&format!(
        r#"<h1 style="font-size:20px;margin:0 0 8px">Traffic spike on {d}</h1><p><strong style="font-size:22px">{visitors}</strong> current visitors (in the last 5 minutes), at or above your alert threshold of {threshold}.</p><p><a href="{l}">See it live</a></p><p style="font-size:12px;color:{MUTED}">You get at most one alert an hour. <a href="{u}">Unsubscribe</a></p>"#,
        d = escape(domain),
        l = escape(&link),
        u = escape(unsubscribe)
    ));
    (text, html)
}

fn subject(kind: Kind, domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!("{} of {}", kind.describe(), escape(d)),
        None => format!("{} of a site that no longer exists", kind.describe()),
    }
}

/// A small page of the unsubscribe link: a heading and a sentence.
pub fn notice_page(title: &str, message: &str) -> String {
    page(&format!(r#"<h1 style="font-size:20px">{}</h1><p>{}</p>"#, escape(title), escape(message)))
}

/// The confirmation the link's GET shows: one button that POSTs the
/// RFC 8058 body to the same link.
pub fn confirm_page(kind: Kind, domain: Option<&str>, action: &str) -> String {
    page(&format!(
        r#"<h1 style="font-size:20px">Unsubscribe</h1><p>Stop {}?</p><form method="post" action="{}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit" style="font-size:16px;padding:8px 16px">Unsubscribe</button></form>"#,
        subject(kind, domain),
        escape(action)
    ))
}

/// What the POST answers, the first time and every time after.
pub fn done_page(kind: Kind, domain: Option<&str>) -> String {
    page(&format!(
        r#"<h1 style="font-size:20px">Unsubscribed</h1><p>Done: you are unsubscribed from {}. You can subscribe again in the dashboard's settings.</p>"#,
        subject(kind, domain)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::{Frequency, Period};
    use chrono::NaiveDate;
    use serde_json::json;

    #[test]
    fn values_and_changes_read_as_people_write_them() {
        assert_eq!(value("visitors", &json!(1234)), "1234");
        assert_eq!(value("bounce_rate", &json!(40.0)), "40.0 %");
        assert_eq!(value("visit_duration", &json!(65)), "1m 05s");
        assert_eq!(value("visit_duration", &json!(9)), "9s");
        assert_eq!(change("visitors", &json!(50)), "+50 %");
        assert_eq!(change("visitors", &json!(-3)), "-3 %");
        assert_eq!(change("bounce_rate", &json!(-5.0)), "-5.0 pt");
        assert_eq!(change("pageviews", &Value::Null), "new");
    }

    #[test]
    fn the_html_escapes_names_and_draws_bars_without_scripts_or_images() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 3, day).expect("a date");
        let report = Report {
            period: Period { frequency: Frequency::Weekly, start: d(23), end: d(29) },
            previous: Period { frequency: Frequency::Weekly, start: d(16), end: d(22) },
            figures: vec![Figure { metric: "visitors", value: json!(6), previous: json!(4), change: json!(50) }],
            top_pages: vec![TopRow { name: "/<script>".into(), visitors: 3, second: Some(4) }],
            top_sources: vec![],
            top_goals: vec![],
            daily_visitors: vec![("2026-03-23".into(), 4), ("2026-03-24".into(), 0), ("2026-03-25".into(), 2)],
        };
        let (text, html) = super::report("a&b.example", &report, "https://app.example", "https://app.example/api/unsubscribe?token=t");
        assert!(text.contains("Visitors: 6 (previous 4, change +50 %)"), "{text}");
        assert!(text.contains("/<script>: 3 visitors, 4 pageviews"), "{text}");
        assert!(html.contains("/&lt;script&gt;") && !html.contains("<script"), "{html}");
        assert!(html.contains("a&amp;b.example"), "{html}");
        assert!(
            html.contains("height:80px;background") && html.contains("height:40px;background") && html.contains("height:0px;background"),
            "{html}"
        );
        assert!(!html.contains("<img") && !html.contains("<svg") && !html.contains("<style"), "{html}");
        assert!(html.contains(r#"href="https://app.example/api/unsubscribe?token=t""#), "{html}");
    }
}
