//! The local binary's TCP host: HTTP/1 on a listener, with the limits a
//! server facing the open internet needs and `axum::serve` cannot set. A
//! client that trickles its headers (slowloris) is cut off after
//! [`Timeouts::header_read`]; a request not answered within
//! [`Timeouts::request`] (a body sent a byte a second, say) gets a 408. In
//! AWS, API Gateway does both before a Lambda sees the request.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the connection's start (or the last answer on it) to a request's full headers.
    pub header_read: Duration,
    /// From a request's headers to its answer: reading the body and the handler.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { header_read: Duration::from_secs(10), request: Duration::from_secs(30) }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name} must be a whole number of seconds from 1 to 3600, not `{value}`")]
pub struct TimeoutsError {
    name: &'static str,
    value: String,
}

impl Timeouts {
    /// `ENGAGETRACK_HEADER_READ_TIMEOUT_SECS` and `ENGAGETRACK_REQUEST_TIMEOUT_SECS`; unset: the defaults.
    pub fn from_env() -> Result<Self, TimeoutsError> {
        let read = |name: &'static str, default: Duration| match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(value) => parse_seconds(name, &value),
        };
        let default = Self::default();
        Ok(Self {
            header_read: read("ENGAGETRACK_HEADER_READ_TIMEOUT_SECS", default.header_read)?,
            request: read("ENGAGETRACK_REQUEST_TIMEOUT_SECS", default.request)?,
        })
    }
}

fn parse_seconds(name: &'static str, value: &str) -> Result<Duration, TimeoutsError> {
    match value.trim().parse::<u64>() {
        Ok(s @ 1..=3600) => Ok(Duration::from_secs(s)),
        _ => Err(TimeoutsError { name, value: value.to_owned() }),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the
/// requests under way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeouts.request));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(timeouts.header_read);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                // Out of file descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            // What `into_make_service_with_connect_info` would add: the `Peer` extractor reads it.
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_seconds_within_an_hour() {
        assert_eq!(parse_seconds("X", "5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_seconds("X", " 3600 ").unwrap(), Duration::from_secs(3600));
        for bad in ["0", "3601", "-1", "1.5", "", "ten"] {
            let e = parse_seconds("ENGAGETRACK_REQUEST_TIMEOUT_SECS", bad).unwrap_err().to_string();
            assert!(e.contains("ENGAGETRACK_REQUEST_TIMEOUT_SECS") && e.contains(&format!("`{bad}`")), "{e}");
        }
    }
}
