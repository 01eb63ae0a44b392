//! User-Agent → browser, OS and device class, with the `woothee` parser
//! (chosen for cost per parse and wasm size; figures in the README). The
//! names are normalised to what the dashboard shows.

use std::collections::HashMap;
use std::sync::Mutex;

use woothee::parser::Parser;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device: Option<Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
        }
    }
}

pub struct UserAgentParser {
    parser: Parser,
    /// Real traffic repeats a few hundred UAs; a parse costs microseconds.
    cache: Mutex<HashMap<String, Client>>,
}

/// Entries kept before the cache starts over (a few MB at most).
const CACHE_ENTRIES: usize = 4_096;

impl Default for UserAgentParser {
    fn default() -> Self {
        Self { parser: Parser::new(), cache: Mutex::new(HashMap::new()) }
    }
}

const UNKNOWN: &str = "UNKNOWN";

/// The low-entropy User-Agent Client Hints Chromium sends on every HTTPS
/// request (`Sec-CH-UA`, `Sec-CH-UA-Mobile`, `Sec-CH-UA-Platform`). When
/// present they beat the UA string, which Chromium freezes and which
/// Chromium-based browsers often leave as plain Chrome.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientHints<'a> {
    pub brands: Option<&'a str>,
    pub mobile: Option<&'a str>,
    pub platform: Option<&'a str>,
}

/// `Sec-CH-UA` brand → the dashboard's name; the generic "Chromium" comes last.
const BRANDS: &[(&str, &str)] = &[
    ("Microsoft Edge", "Edge"),
    ("Opera GX", "Opera"),
    ("Opera", "Opera"),
    ("Samsung Internet", "Samsung Internet"),
    ("YaBrowser", "Yandex Browser"),
    ("Yandex", "Yandex Browser"),
    ("Brave", "Brave"),
    ("Vivaldi", "Vivaldi"),
    ("Google Chrome", "Chrome"),
    ("HeadlessChrome", "Chrome"),
    ("Chromium", "Chrome"),
];

impl ClientHints<'_> {
    /// The most specific known brand and its major version.
    fn browser(&self) -> Option<(&'static str, Option<String>)> {
        let brands: Vec<(&str, &str)> = self
            .brands?
            .split(',')
            .filter_map(|b| {
                let (name, version) = b.split_once(";v=").unwrap_or((b, ""));
                Some((name.trim().trim_matches('"').trim(), version.trim().trim_matches('"')))
            })
            .collect();
        BRANDS.iter().find_map(|(brand, name)| brands.iter().find(|(b, _)| b == brand).map(|(_, v)| (*name, major(v))))
    }

    fn os(&self) -> Option<&'static str> {
        Some(match self.platform?.trim().trim_matches('"') {
            "Windows" => "Windows",
            "macOS" => "macOS",
            "Android" => "Android",
            "iOS" => "iOS",
            "Chrome OS" | "ChromeOS" | "Chromium OS" => "Chrome OS",
            "Linux" => "Linux",
            _ => return None,
        })
    }
}

impl UserAgentParser {
    /// [`UserAgentParser::parse`], then whatever the Client Hints say instead.
    pub fn parse_with_hints(&self, ua: &str, hints: &ClientHints<'_>) -> Client {
        let mut client = self.parse(ua);
        if let Some((browser, version)) = hints.browser() {
            client.browser = Some(browser.to_owned());
            client.browser_version = version.or(client.browser_version);
        }
        if let Some(os) = hints.os()
            && client.os.as_deref() != Some(os)
        {
            (client.os, client.os_version) = (Some(os.to_owned()), None);
        }
        // `?1` asks for the mobile layout: phones. Tablets and desktops send `?0`.
        match hints.mobile.map(|m| m.trim()) {
            Some("?1") => client.device = Some(Device::Mobile),
            Some("?0") if client.os.as_deref() == Some("Android") => client.device = Some(Device::Tablet),
            Some("?0") if client.device == Some(Device::Mobile) => client.device = Some(Device::Desktop),
            _ => {}
        }
        client
    }

    pub fn parse(&self, ua: &str) -> Client {
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(ua).cloned()) {
            return hit;
        }
        let client = self.parse_uncached(ua);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(ua.to_owned(), client.clone());
        }
        client
    }

    pub fn parse_uncached(&self, ua: &str) -> Client {
        // woothee knows no browser here, but a phone or tablet token still tells the device.
        let Some(r) = self.parser.parse(ua) else { return Client { device: device("", ua), ..Client::default() } };
        let known = |s: &str| (!s.is_empty() && s != UNKNOWN).then(|| s.to_owned());
        let browser = known(r.name).map(|name| browser_name(&name, ua));
        // Android WebViews are Chrome, iOS ones Safari: their version is in their own token.
        // A browser told by its own token (not by woothee) has its version there too.
        let own_token = match browser.as_deref() {
            Some("Opera") => Some("OPR/"),
            Some("Yandex Browser") => YANDEX_TOKENS.iter().copied().find(|t| ua.contains(t)),
            _ => None,
        };
        let browser_version = match (r.name, own_token) {
            ("Chrome" | "Safari" | "Webview", Some(token)) => version_after(ua, token),
            ("Webview", None) => version_after(ua, "Chrome/").or_else(|| version_after(ua, "Version/")),
            _ => known(r.version).and_then(|v| major(&v)),
        };
        let (os, os_version) = os_name(r.os, &r.os_version, ua);
        Client { browser, browser_version, os, os_version, device: device(r.category, ua) }
    }
}

/// woothee reports Chromium-based browsers it does not know as Chrome or
/// Safari (or as a WebView); a few big ones are told apart by their own token.
fn browser_name(name: &str, ua: &str) -> String {
    let token = |t: &str| ua.contains(t);
    let webkit = matches!(name, "Chrome" | "Safari" | "Webview");
    match name {
        _ if webkit && token("SamsungBrowser/") => "Samsung Internet".into(),
        _ if webkit && token("OPR/") => "Opera".into(),
        // Yandex Browser, and the Yandex app's browser (`YaSearchBrowser`, older `YandexSearch`).
        _ if webkit && YANDEX_TOKENS.iter().any(|t| token(t)) => "Yandex Browser".into(),
        _ if webkit && token("Vivaldi/") => "Vivaldi".into(),
        // Presto-era Opera (TVs, set-top boxes) leads with its own product token.
        "Safari" if ua.starts_with("Opera/") => "Opera".into(),
        "Safari" if token("CriOS/") => "Chrome".into(),
        "Safari" if token("FxiOS/") => "Firefox".into(),
        "Safari" if token("EdgiOS/") => "Edge".into(),
        "SamsungBrowser" => "Samsung Internet".into(),
        "Webview" if token("Chrome/") => "Chrome".into(),
        "Webview" => "Safari".into(),
        "Safari" if token("OPiOS/") => "Opera".into(),
        other => other.into(),
    }
}

const YANDEX_TOKENS: &[&str] = &["YaBrowser/", "YaSearchBrowser/", "YandexSearchBrowser/", "YandexSearch/"];

fn version_after(ua: &str, token: &str) -> Option<String> {
    let rest = &ua[ua.find(token)? + token.len()..];
    major(rest.split([' ', ';', ')']).next()?)
}

fn major(version: &str) -> Option<String> {
    let m = version.split(['.', '_']).next()?;
    (!m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())).then(|| m.to_owned())
}

fn os_name(os: &str, version: &str, ua: &str) -> (Option<String>, Option<String>) {
    let version = (!version.is_empty() && version != UNKNOWN).then(|| version.replace('_', "."));
    let (name, version) = match os {
        "" | UNKNOWN => return (None, None),
        // "Windows 10" carries its version in the name; "NT 10.0" is 10 or 11.
        s if s.starts_with("Windows") => {
            ("Windows", s.strip_prefix("Windows ").filter(|v| !v.is_empty() && !v.starts_with("NT")).map(str::to_owned))
        }
        "Mac OSX" | "Mac OS" => ("macOS", version),
        "iPhone" | "iPad" | "iPod" | "iOS" => ("iOS", version),
        "ChromeOS" => ("Chrome OS", None),
        "Android" => ("Android", version.as_deref().and_then(major)),
        "Linux" if ua.contains("Ubuntu") => ("Ubuntu", None),
        other => (other, version),
    };
    (Some(name.to_owned()), version)
}

/// woothee's categories, with tablets told apart: iPads, and Android
/// devices without "Mobile" in their UA (Google's own convention).
/// Android tablets that do say "Mobile", and e-readers, by their model tokens;
/// `/apad` is the Yandex app's tablet build (`YaApp_Android/23.110/apad`).
const TABLET_MODELS: &[&str] = &[
    "SM-T", "SM-X", "SM-P", "Galaxy Tab", "MediaPad", "MatePad", "Lenovo TB", "Lenovo YT", "Kindle", "Silk/", "KFTT", "KFOT",
    "KFJW", "KFSOWI", "KFTHW", "KFAP", "Nexus 7", "Nexus 10", "Pixel Tablet", "Tab ", "Tab)", "Tab;", "TabS", "Pad ", "Pad;",
    "Pad)", "PocketBook", "/apad",
];
/// Phones whose UA woothee reads as a PC or not at all.
const PHONE_TOKENS: &[&str] = &[
    "Windows Phone", "Lumia", "UCWEB", "Adr ", "MIDP", "Opera Mini", "J2ME", "Series60", "SymbianOS", "BlackBerry", "KaiOS", "Tizen",
    "Mobile",
];

fn device(category: &str, ua: &str) -> Option<Device> {
    let model_tablet = TABLET_MODELS.iter().any(|t| ua.contains(t));
    // "Android without Mobile" is a browser's convention (Chrome and Safari-style tokens say
    // `Mobile Safari` on phones); HTTP clients such as `Dalvik/` and trimmed app UAs never say it.
    let browser_ua = ua.contains("Safari/") || ua.contains("Firefox/");
    let tablet =
        ua.contains("iPad") || ua.contains("Tablet") || model_tablet || (ua.contains("Android") && !ua.contains("Mobile") && browser_ua);
    let phone = || PHONE_TOKENS.iter().any(|t| ua.contains(t));
    match category {
        // Android apps on Chrome OS name the laptop as their model.
        _ if ua.contains("Chromebook") || ua.contains("Pixelbook") => Some(Device::Desktop),
        "pc" if model_tablet => Some(Device::Tablet),
        "pc" if phone() => Some(Device::Mobile),
        "pc" => Some(Device::Desktop),
        "smartphone" | "mobilephone" if tablet => Some(Device::Tablet),
        "smartphone" | "mobilephone" => Some(Device::Mobile),
        _ if model_tablet => Some(Device::Tablet),
        _ if phone() => Some(Device::Mobile),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ua: &str) -> (Option<String>, Option<String>, Option<String>, Option<String>, Option<&'static str>) {
        let c = UserAgentParser::default().parse(ua);
        (c.browser, c.browser_version, c.os, c.os_version, c.device.map(Device::as_str))
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn real_browsers() {
        assert_eq!(
            parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
            (s("Chrome"), s("142"), s("Windows"), s("10"), Some("desktop"))
        );
        assert_eq!(
            parse("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15"),
            (s("Safari"), s("18"), s("macOS"), s("10.15.7"), Some("desktop"))
        );
        assert_eq!(
            parse("Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1"),
            (s("Safari"), s("18"), s("iOS"), s("18.6"), Some("mobile"))
        );
        assert_eq!(
            parse("Mozilla/5.0 (iPad; CPU OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1").4,
            Some("tablet")
        );
        let android = parse("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36");
        assert_eq!((android.0, android.2, android.4), (s("Samsung Internet"), s("Android"), Some("mobile")));
        let firefox = parse("Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0");
        assert_eq!((firefox.0, firefox.1, firefox.2, firefox.4), (s("Firefox"), s("145"), s("Linux"), Some("desktop")));
        let edge = parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0");
        assert_eq!(edge.0, s("Edge"));
    }

    #[test]
    fn webviews_are_their_engines_browser() {
        let android = parse("Mozilla/5.0 (Linux; Android 9; Pixel 2 XL Build/PPP5.180610.010; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/68.0.3440.85 Mobile Safari/537.36");
        assert_eq!((android.0, android.1), (s("Chrome"), s("68")));
        let ios = parse("Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148");
        assert_eq!(ios.0, s("Safari"));
    }

    #[test]
    fn chromium_browsers_are_told_by_their_token_in_webviews_too() {
        let opera = parse("Mozilla/5.0 (Linux; Android 9; SDA-8TAB Build/PPR1.181005.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.67 Safari/537.36 OPR/72.0.2254.67482");
        assert_eq!((opera.0, opera.1), (s("Opera"), s("72")));
        let yandex_app = parse("Mozilla/5.0 (Linux; arm_64; Android 13; 23073RPBFC) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.2332 YaApp_Android/23.110/apad YaSearchBrowser/23.110/apad BroPP/1.0 SA/3 Mobile Safari/537.36");
        assert_eq!((yandex_app.0, yandex_app.1, yandex_app.4), (s("Yandex Browser"), s("23"), Some("tablet")), "`/apad`: the tablet build");
        let search = parse("Mozilla/5.0 (Linux; Android 8.1.0; I4312 Build/54.0.A.5.85; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/70.0.3538.110 Mobile Safari/537.36 YandexSearch/7.21");
        assert_eq!((search.0, search.1), (s("Yandex Browser"), s("7")));
        let presto = parse("Opera/9.80 X11;Linux armv7i;NETRANGEMMH;HbbTV/1.1.1;CE-HTML/1.0;Vendor/TCL;U;en AppleWebKit/534.24 KHTML, like Gecko Safari/534.24");
        assert_eq!(presto.0, s("Opera"));
    }

    #[test]
    fn android_without_mobile_is_a_tablet_only_in_a_browser_ua() {
        let chrome_tablet =
            "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(parse(chrome_tablet).4, Some("tablet"));
        let unnamed = "Mozilla/5.0 (Linux; Android 10; Lenovo 10X) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(parse(unnamed).4, Some("tablet"));
        // An HTTP client never says "Mobile": most Android devices are phones.
        assert_eq!(parse("Dalvik/2.1.0 (Linux; U; Android 10; IN2023 Build/QKQ1.191222.002)").4, Some("mobile"));
        assert_eq!(parse("Dalvik/2.1.0 (Linux; U; Android 9; HP Chromebook x360 11 G1 EE Build/R80-12739.111.0)").4, Some("desktop"));
    }

    #[test]
    fn phone_tokens_count_when_woothee_knows_nothing() {
        let ucweb = parse("UCWEB/2.0 (MIDP-2.0; U; Adr 4.4.2; en-US; H60-L04) U2/1.0.0 UCBrowser/9.3.1.476 U2/1.0.0 Mobile");
        assert_eq!((ucweb.0, ucweb.4), (None, Some("mobile")));
    }

    #[test]
    fn client_hints_beat_the_ua() {
        let p = UserAgentParser::default();
        let frozen = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
        let hints = ClientHints {
            brands: Some(r#""Chromium";v="142", "Not_A Brand";v="24", "Microsoft Edge";v="142""#),
            mobile: Some("?0"),
            platform: Some(r#""Android""#),
        };
        let c = p.parse_with_hints(frozen, &hints);
        assert_eq!((c.browser.as_deref(), c.browser_version.as_deref()), (Some("Edge"), Some("142")));
        assert_eq!((c.os.as_deref(), c.device), (Some("Android"), Some(Device::Tablet)));
        let phone = ClientHints { mobile: Some("?1"), ..hints };
        assert_eq!(p.parse_with_hints(frozen, &phone).device, Some(Device::Mobile));
        assert_eq!(p.parse_with_hints(frozen, &ClientHints::default()), p.parse(frozen), "no hints: the UA alone");
    }

    #[test]
    fn cached_and_uncached_agree() {
        let p = UserAgentParser::default();
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
        assert_eq!(p.parse(ua), p.parse_uncached(ua));
        assert_eq!(p.parse(ua), p.parse_uncached(ua));
    }

    #[test]
    fn garbage_is_unknown_not_a_panic() {
        assert_eq!(UserAgentParser::default().parse("\u{0}\u{ffff}((("), Client::default());
        assert_eq!(UserAgentParser::default().parse(""), Client::default());
    }
}
