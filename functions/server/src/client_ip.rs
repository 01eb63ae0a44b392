//! Where a request comes from. The address is used for the visitor hash and
//! then forgotten; it is never logged or stored.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientIpError {
    #[error("the client address is unknown: no peer address and no trusted proxy header")]
    Unknown,
    #[error("the {0} header does not hold an IP address")]
    BadHeader(&'static str),
}

/// Behind a trusted proxy (Cloudflare, API Gateway, a load balancer) the
/// client is named by `CF-Connecting-IP` or the first `X-Forwarded-For`
/// entry; otherwise only the socket peer can be believed.
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>, trust_proxy: bool) -> Result<IpAddr, ClientIpError> {
    if trust_proxy {
        if let Some(v) = headers.get("cf-connecting-ip") {
            return parse_header(v, "CF-Connecting-IP");
        }
        if let Some(v) = headers.get("x-forwarded-for") {
            let first = v.to_str().ok().and_then(|s| s.split(',').next()).unwrap_or_default();
            return first.trim().parse().map_err(|_| ClientIpError::BadHeader("X-Forwarded-For"));
        }
    }
    peer.map(|p| p.ip()).ok_or(ClientIpError::Unknown)
}

fn parse_header(v: &axum::http::HeaderValue, name: &'static str) -> Result<IpAddr, ClientIpError> {
    v.to_str().ok().and_then(|s| s.trim().parse().ok()).ok_or(ClientIpError::BadHeader(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).collect()
    }

    const PEER: Option<SocketAddr> = Some(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 5555));

    #[test]
    fn untrusted_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.5"), ("cf-connecting-ip", "203.0.113.6")]);
        assert_eq!(client_ip(&h, PEER, false), Ok("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_headers_win_in_order() {
        let h = headers(&[("x-forwarded-for", "203.0.113.5, 10.1.1.1"), ("cf-connecting-ip", "2001:db8::7")]);
        assert_eq!(client_ip(&h, PEER, true), Ok("2001:db8::7".parse().unwrap()));
        let h = headers(&[("x-forwarded-for", " 203.0.113.5 , 10.1.1.1")]);
        assert_eq!(client_ip(&h, PEER, true), Ok("203.0.113.5".parse().unwrap()));
        assert_eq!(client_ip(&HeaderMap::new(), PEER, true), Ok("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn garbage_and_absence_are_errors() {
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(client_ip(&h, PEER, true), Err(ClientIpError::BadHeader("X-Forwarded-For")));
        assert_eq!(client_ip(&HeaderMap::new(), None, false), Err(ClientIpError::Unknown));
    }
}
