//! The dashboard: the built assets of `dashboard/` embedded in the binary and
//! served at `/` (and at the paths mailed links open). Nothing is fetched
//! from anywhere else at run time: the Content-Security-Policy says so.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::state::AppState;

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset { body: include_bytes!("../../../../dashboard/dist/index.html"), content_type: "text/html; charset=utf-8" };
const APP_JS: Asset = Asset { body: include_bytes!("../../../../dashboard/dist/app.js"), content_type: "application/javascript; charset=utf-8" };
const APP_CSS: Asset = Asset { body: include_bytes!("../../../../dashboard/dist/app.css"), content_type: "text/css; charset=utf-8" };
const WORLD: Asset = Asset { body: include_bytes!("../../../../dashboard/dist/world.json"), content_type: "application/json" };

/// Only our own origin; inline styles for chart sizing (uPlot sets them).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Pages of the app that mail links and redirects open directly.
pub const ENTRY_PATHS: &[&str] = &["/", "/verify-email", "/reset-password", "/accept-invite", "/signed-in", "/billing"];

pub fn router() -> Router<AppState> {
    let mut router = Router::new()
        .route("/assets/app.js", get(|h: HeaderMap| async move { serve(&APP_JS, &h, true) }))
        .route("/assets/app.css", get(|h: HeaderMap| async move { serve(&APP_CSS, &h, true) }))
        .route("/assets/world.json", get(|h: HeaderMap| async move { serve(&WORLD, &h, true) }));
    for path in ENTRY_PATHS {
        router = router.route(path, get(|h: HeaderMap| async move { serve(&INDEX, &h, false) }));
    }
    router
}

fn etag(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12]))
}

fn serve(asset: &Asset, headers: &HeaderMap, immutable_ok: bool) -> Response {
    let tag = etag(asset.body);
    let cache = if immutable_ok { "public, max-age=300, must-revalidate" } else { "no-cache" };
    let mut common = vec![
        (header::ETAG, HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""))),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
    ];
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [common.remove(0)]).into_response();
    }
    common.push((header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)));
    let mut response = asset.body.into_response();
    for (k, v) in common {
        response.headers_mut().insert(k, v);
    }
    response
}
