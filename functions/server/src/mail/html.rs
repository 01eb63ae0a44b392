//! The HTML alternative of a plain-text mail: the same words, escaped, with
//! paragraphs and the links made clickable. Written from the text so the two
//! parts never say different things.

use std::sync::LazyLock;

static LINK: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"https?://[^\s<>]+[^\s<>.,;:!?)]").expect("a valid pattern"));

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line: the text escaped, each link an `<a>` to itself.
fn line(text: &str) -> String {
    let mut out = String::new();
    let mut rest = 0;
    for link in LINK.find_iter(text) {
        out.push_str(&escape(&text[rest..link.start()]));
        let url = escape(link.as_str());
        out.push_str(&format!(r#"<a href="{url}">{url}</a>"#));
        rest = link.end();
    }
    out.push_str(&escape(&text[rest..]));
    out
}

pub fn from_text(text: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>", p.lines().map(line).collect::<Vec<_>>().join("<br>\n")))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n<body style=\"font-family: sans-serif; line-height: 1.5\">\n{}\n</body></html>\n",
        paragraphs.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_lines_and_links() {
        let html = from_text("Hello <Ann> & co.\n\nOpen this link:\nhttps://example.com/verify-email?token=a-b_c.\n");
        assert!(html.contains("<p>Hello &lt;Ann&gt; &amp; co.</p>"), "{html}");
        assert!(
            html.contains(
                r#"<p>Open this link:<br>
<a href="https://example.com/verify-email?token=a-b_c">https://example.com/verify-email?token=a-b_c</a>.</p>"#
            ),
            "{html}"
        );
    }

    #[test]
    fn markup_in_a_link_cannot_escape_the_attribute() {
        let html = from_text(r#"https://example.com/?q="onmouseover=x"#);
        assert!(html.contains(r#"href="https://example.com/?q=&quot;onmouseover=x""#), "{html}");
    }
}
