//! The user's handler as the dispatcher sees it: an HTTP endpoint that receives one event per
//! POST. Connections are kept alive and reused (one pool for the process), so the cost per
//! event is one request on a warm connection.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, header::RETRY_AFTER};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::outcome::{HandlerResult, parse_retry_after};

/// The largest response body read (and thrown away) to keep a connection reusable; a handler
/// answering with more has its connection closed instead.
const MAX_DRAINED_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("--endpoint {endpoint:?} is not a usable http:// URL: {why}")]
pub struct EndpointError {
    endpoint: String,
    why: String,
}

/// The handler endpoint with its connection pool.
#[derive(Clone)]
pub struct Handler {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
}

impl Handler {
    /// `endpoint`: `http://host:port/path`. Only plain HTTP: the handler runs in the same pod.
    pub fn new(endpoint: &str) -> Result<Self, EndpointError> {
        let invalid = |why: &str| EndpointError {
            endpoint: endpoint.to_string(),
            why: why.to_string(),
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid(
                "the scheme must be http (the handler runs next to the dispatcher)",
            ));
        }
        if uri.host().is_none() {
            return Err(invalid("it names no host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            client,
            endpoint: uri,
        })
    }

    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }

    /// POSTs one event; `timeout` bounds the whole exchange.
    pub async fn deliver(
        &self,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> HandlerResult {
        tokio::time::timeout(timeout, self.exchange(headers, body))
            .await
            .unwrap_or(HandlerResult::TimedOut)
    }

    /// POSTs one event, for as long as it takes: the caller bounds it (see [`Handler::deliver`]).
    pub async fn exchange(&self, headers: HeaderMap, body: Bytes) -> HandlerResult {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        *request.headers_mut() = headers;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // Read the (small) body so the connection goes back to the pool.
            let body = response.into_body();
            let _ = http_body_util::Limited::new(body, MAX_DRAINED_BODY)
                .collect()
                .await;
            Ok::<_, hyper_util::client::legacy::Error>(HandlerResult::Answered {
                status,
                retry_after,
            })
        };
        exchange.await.unwrap_or(HandlerResult::Unreachable)
    }

    /// Whether something accepts connections at the endpoint (for readiness).
    pub async fn reachable(&self) -> bool {
        let host = self.endpoint.host().unwrap_or("127.0.0.1");
        let port = self.endpoint.port_u16().unwrap_or(80);
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .is_ok_and(|connected| connected.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_endpoints_with_a_host_are_accepted() {
        assert!(Handler::new("http://127.0.0.1:8080/events").is_ok());
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:8080",
            "http:///x",
            "not a url",
        ] {
            let err = Handler::new(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.to_string().starts_with("--endpoint "), "{err}");
        }
    }
}
