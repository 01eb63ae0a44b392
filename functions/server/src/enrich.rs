//! `engagetrack enrich`: JSON lines in (`{"ua", "ip", "url", "referrer",
//! "headers", "asn"}`, any may be missing; `headers` are the request's others,
//! e.g. `{"accept-language": "en", "sec-ch-ua": "…"}`, and with them a
//! missing `accept-language` counts as not sent), one JSON line out per input line with what the edge
//! would conclude. The same pipeline as the edge, so a site owner can see
//! why a visit was classified, or dropped, as it was.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;

use serde::Deserialize;
use shared::Pipeline;
use shared::bots::RequestSignals;

#[derive(Deserialize)]
struct Request {
    ua: Option<String>,
    ip: Option<String>,
    url: Option<String>,
    referrer: Option<String>,
    headers: Option<HashMap<String, String>>,
    asn: Option<u32>,
}

/// Returns the number of lines answered. A line that is not such an object
/// is answered with `{"error": reason}`, so outputs stay aligned with inputs.
pub fn run(input: impl BufRead, mut output: impl Write, pipeline: &Pipeline) -> std::io::Result<u64> {
    let mut answered = 0;
    for line in input.lines() {
        let line = line?;
        let answer = match explain_line(&line, pipeline) {
            Ok(json) => json,
            Err(reason) => serde_json::json!({ "error": reason }).to_string(),
        };
        output.write_all(answer.as_bytes())?;
        output.write_all(b"\n")?;
        answered += 1;
    }
    output.flush()?;
    Ok(answered)
}

fn explain_line(line: &str, pipeline: &Pipeline) -> Result<String, String> {
    let request: Request = serde_json::from_str(line).map_err(|e| format!("invalid JSON line: {e}"))?;
    let ip = match request.ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| format!("`ip` is not an IP address: {s}"))?),
        None => None,
    };
    let headers: HashMap<String, String> =
        request.headers.unwrap_or_default().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let header = |name: &str| headers.get(name).map(String::as_str);
    let signals = RequestSignals {
        headers_seen: !headers.is_empty(),
        accept_language: header("accept-language"),
        sec_ch_ua: header("sec-ch-ua"),
        sec_ch_ua_mobile: header("sec-ch-ua-mobile"),
        sec_ch_ua_platform: header("sec-ch-ua-platform"),
        asn: request.asn,
    };
    let ua = request.ua.as_deref().unwrap_or_default();
    let explanation = pipeline.explain_request(ua, ip, request.url.as_deref(), request.referrer.as_deref(), &signals);
    serde_json::to_string(&explanation).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_out_per_line_in() {
        let input = concat!(
            r#"{"ua":"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}"#, "\n",
            "not json\n",
            r#"{"ua":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36","url":"https://e.com/?utm_source=x&utm_medium=cpc","referrer":"https://www.bing.com/","ip":"203.0.113.1"}"#, "\n",
            r#"{"ip":"nope"}"#, "\n",
        );
        let mut out = Vec::new();
        assert_eq!(run(input.as_bytes(), &mut out, &Pipeline::default()).unwrap(), 4);
        let lines: Vec<serde_json::Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["bot"], true);
        assert!(lines[0]["bot_reason"].as_str().unwrap().contains("Googlebot"));
        assert!(lines[1]["error"].as_str().unwrap().contains("invalid JSON"));
        assert_eq!(lines[2]["bot"], false);
        assert_eq!(lines[2]["browser"], "Chrome");
        assert_eq!(lines[2]["channel"], "Paid Search");
        assert_eq!(lines[2]["source"], "Bing");
        assert_eq!(lines[2]["utm_medium"], "cpc");
        assert!(lines[2]["country"].is_null(), "no geo database given");
        assert!(lines[3]["error"].as_str().unwrap().contains("`ip`"));
    }

    #[test]
    fn headers_and_network_are_signals() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
        let input = [
            serde_json::json!({"ua": chrome, "asn": 16509, "headers": {"Accept-Language": "de"}}),
            serde_json::json!({"ua": chrome, "asn": 16509, "headers": {"sec-ch-ua": "\"Chromium\";v=\"142\", \"Opera\";v=\"126\""}}),
            serde_json::json!({"ua": chrome, "headers": {"sec-ch-ua-platform": "\"Linux\""}}),
        ]
        .map(|l| l.to_string() + "\n")
        .concat();
        let mut out = Vec::new();
        run(input.as_bytes(), &mut out, &Pipeline::default()).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["bot"], false, "a VPN on AWS: {}", lines[0]);
        assert_eq!(lines[1]["bot_reason"], "behaviour: no Accept-Language + hosting network AS16509");
        assert_eq!(lines[1]["browser"], "Opera", "Client Hints name the browser");
        assert_eq!(lines[2]["bot"], false, "no Accept-Language alone");
        assert_eq!(lines[2]["os"], "Linux");
    }
}
