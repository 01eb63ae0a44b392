//! Where a request comes from. The address is used for the visitor hash (and
//! the sign-in rate limit's keyed hash) and then forgotten; it is never
//! logged or stored.
//!
//! Which source can be believed depends on what stands in front of the
//! server, so it is one setting per deployment, `ENGAGETRACK_CLIENT_IP`:
//!
//! | mode | the client is | use when |
//! |---|---|---|
//! | `socket` (default) | the TCP peer | nothing in front (local runs) |
//! | `proxy` | the rightmost `X-Forwarded-For` entry, else the peer | one trusted reverse proxy that appends the peer it saw |
//! | `cloudflare` | `CF-Connecting-IP` only | behind Cloudflare / our worker |
//! | `api-gateway` | `requestContext.http.sourceIp` | the Lambdas behind API Gateway HTTP API |
//!
//! In no mode does the leftmost `X-Forwarded-For` entry count: the visitor
//! writes it, so trusting it would let anyone choose their visitor hash.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpMode {
    #[default]
    Socket,
    Proxy,
    Cloudflare,
    ApiGateway,
}

impl ClientIpMode {
    pub const ENV: &'static str = "ENGAGETRACK_CLIENT_IP";

    pub fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Proxy => "proxy",
            Self::Cloudflare => "cloudflare",
            Self::ApiGateway => "api-gateway",
        }
    }

    /// `ENGAGETRACK_CLIENT_IP`, or `default` when it is unset or empty.
    pub fn from_env_or(default: Self) -> Result<Self, ClientIpModeError> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse(),
            _ => Ok(default),
        }
    }
}

impl std::fmt::Display for ClientIpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ENGAGETRACK_CLIENT_IP is `{0}`; use socket, proxy, cloudflare or api-gateway")]
pub struct ClientIpModeError(pub String);

impl FromStr for ClientIpMode {
    type Err = ClientIpModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "socket" => Ok(Self::Socket),
            "proxy" => Ok(Self::Proxy),
            "cloudflare" => Ok(Self::Cloudflare),
            "api-gateway" | "apigateway" | "api_gateway" => Ok(Self::ApiGateway),
            _ => Err(ClientIpModeError(s.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientIpError {
    #[error("the client address is unknown: no peer address")]
    NoPeer,
    #[error("the client address is unknown: no {0} header")]
    MissingHeader(&'static str),
    #[error("the client address is unknown: no requestContext.http.sourceIp from API Gateway")]
    NoSourceIp,
    #[error("the {0} header does not hold an IP address")]
    BadHeader(&'static str),
    #[error("API Gateway's sourceIp is not an IP address")]
    BadSourceIp,
}

/// What the host (not the visitor) says about the connection: the socket
/// peer (local server) or API Gateway's request context (Lambda).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub peer: Option<SocketAddr>,
    pub gateway_source_ip: Option<String>,
}

impl Transport {
    /// From the extensions axum (`ConnectInfo`) or `lambda_http`
    /// (`RequestContext`) put on the request.
    pub fn of(extensions: &Extensions) -> Self {
        let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let gateway_source_ip = match extensions.get::<lambda_http::request::RequestContext>() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            _ => None,
        };
        Self { peer, gateway_source_ip }
    }
}

pub fn client_ip(mode: ClientIpMode, headers: &HeaderMap, transport: &Transport) -> Result<IpAddr, ClientIpError> {
    let peer = || transport.peer.map(|p| p.ip()).ok_or(ClientIpError::NoPeer);
    match mode {
        ClientIpMode::Socket => peer(),
        ClientIpMode::Proxy => match rightmost_forwarded_for(headers) {
            Some(hop) => hop.parse().map_err(|_| ClientIpError::BadHeader("X-Forwarded-For")),
            // Reached without the proxy: the peer is the client itself.
            None => peer(),
        },
        ClientIpMode::Cloudflare => {
            let v = headers.get("cf-connecting-ip").ok_or(ClientIpError::MissingHeader("CF-Connecting-IP"))?;
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(ClientIpError::BadHeader("CF-Connecting-IP"))
        }
        ClientIpMode::ApiGateway => transport
            .gateway_source_ip
            .as_deref()
            .ok_or(ClientIpError::NoSourceIp)?
            .trim()
            .parse()
            .map_err(|_| ClientIpError::BadSourceIp),
    }
}

/// The last entry of the last `X-Forwarded-For` line: the one our proxy
/// appended. Everything left of it came from the visitor.
fn rightmost_forwarded_for(headers: &HeaderMap) -> Option<&str> {
    let last_line = headers.get_all("x-forwarded-for").iter().next_back()?;
    let hop = last_line.to_str().ok().and_then(|s| s.rsplit(',').next()).unwrap_or_default().trim();
    // An unreadable line is still a header our proxy set: report it as bad, not absent.
    Some(hop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    const PEER: Option<SocketAddr> = Some(SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 5555));

    fn peer_only() -> Transport {
        Transport { peer: PEER, gateway_source_ip: None }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SPOOFED: &[(&str, &str)] = &[("x-forwarded-for", "198.51.100.66"), ("cf-connecting-ip", "198.51.100.67")];

    #[test]
    fn modes_parse_and_name_themselves() {
        for mode in [ClientIpMode::Socket, ClientIpMode::Proxy, ClientIpMode::Cloudflare, ClientIpMode::ApiGateway] {
            assert_eq!(mode.name().parse::<ClientIpMode>(), Ok(mode));
        }
        assert_eq!(" Cloudflare ".parse::<ClientIpMode>(), Ok(ClientIpMode::Cloudflare));
        let err = "true".parse::<ClientIpMode>().unwrap_err();
        assert!(err.to_string().contains("socket, proxy, cloudflare or api-gateway"), "{err}");
        assert_eq!(ClientIpMode::default(), ClientIpMode::Socket);
    }

    #[test]
    fn socket_ignores_every_header() {
        let h = headers(SPOOFED);
        assert_eq!(client_ip(ClientIpMode::Socket, &h, &peer_only()), Ok(ip("10.0.0.1")));
        assert_eq!(client_ip(ClientIpMode::Socket, &h, &Transport::default()), Err(ClientIpError::NoPeer));
    }

    #[test]
    fn proxy_takes_the_rightmost_hop_not_the_visitors_entries() {
        // The visitor sent "198.51.100.66, 1.2.3.4"; our proxy appended 203.0.113.5.
        let h = headers(&[("x-forwarded-for", "198.51.100.66, 1.2.3.4, 203.0.113.5 ")]);
        assert_eq!(client_ip(ClientIpMode::Proxy, &h, &peer_only()), Ok(ip("203.0.113.5")));
        // A proxy that adds its own line: the last line counts.
        let h = headers(&[("x-forwarded-for", "198.51.100.66"), ("x-forwarded-for", "2001:db8::5")]);
        assert_eq!(client_ip(ClientIpMode::Proxy, &h, &peer_only()), Ok(ip("2001:db8::5")));
        // CF-Connecting-IP means nothing to a plain proxy.
        let h = headers(&[("cf-connecting-ip", "198.51.100.67")]);
        assert_eq!(client_ip(ClientIpMode::Proxy, &h, &peer_only()), Ok(ip("10.0.0.1")));
        let h = headers(&[("x-forwarded-for", "203.0.113.5, not-an-ip")]);
        assert_eq!(client_ip(ClientIpMode::Proxy, &h, &peer_only()), Err(ClientIpError::BadHeader("X-Forwarded-For")));
    }

    #[test]
    fn cloudflare_believes_cf_connecting_ip_only() {
        let h = headers(&[("x-forwarded-for", "198.51.100.66"), ("cf-connecting-ip", " 2001:db8::7 ")]);
        assert_eq!(client_ip(ClientIpMode::Cloudflare, &h, &peer_only()), Ok(ip("2001:db8::7")));
        let h = headers(&[("x-forwarded-for", "198.51.100.66")]);
        assert_eq!(
            client_ip(ClientIpMode::Cloudflare, &h, &peer_only()),
            Err(ClientIpError::MissingHeader("CF-Connecting-IP"))
        );
        let h = headers(&[("cf-connecting-ip", "nope")]);
        assert_eq!(client_ip(ClientIpMode::Cloudflare, &h, &peer_only()), Err(ClientIpError::BadHeader("CF-Connecting-IP")));
    }

    #[test]
    fn api_gateway_reads_the_request_context() {
        let mut ctx = lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        ctx.http.source_ip = Some("203.0.113.44".into());
        let mut extensions = Extensions::new();
        extensions.insert(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
        let transport = Transport::of(&extensions);
        assert_eq!(transport.gateway_source_ip.as_deref(), Some("203.0.113.44"));
        assert_eq!(client_ip(ClientIpMode::ApiGateway, &headers(SPOOFED), &transport), Ok(ip("203.0.113.44")));
        assert_eq!(client_ip(ClientIpMode::ApiGateway, &headers(SPOOFED), &peer_only()), Err(ClientIpError::NoSourceIp));
        let bad = Transport { peer: None, gateway_source_ip: Some("x".into()) };
        assert_eq!(client_ip(ClientIpMode::ApiGateway, &HeaderMap::new(), &bad), Err(ClientIpError::BadSourceIp));
    }

    #[test]
    fn the_peer_comes_from_connect_info() {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(PEER.unwrap()));
        assert_eq!(Transport::of(&extensions), peer_only());
    }
}
