//! The upstream: where the plugin's "next handler" sends requests, through one
//! pooled HTTP/1 client shared by every plugin instance.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as LegacyError};
use hyper_util::rt::TokioExecutor;
use tripswitch_plugin_settings::TRIPSWITCH_HEADER;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::body::{self, Progress};

/// How long connecting to the upstream may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection to the upstream is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The upstream's address, `http://HOST:PORT`, as given to `--upstream`.
#[derive(Clone, Debug)]
pub struct Address {
    authority: Authority,
    host_header: HeaderValue,
}

impl Address {
    /// Parses `http://HOST[:PORT][/]` (port 80 when left out).
    pub fn parse(text: &str) -> Result<Address, String> {
        const EXPECTED: &str = "expected http://HOST:PORT";
        let uri = Uri::from_str(text.trim()).map_err(|e| format!("not a URL ({e}); {EXPECTED}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!("https upstreams are not supported; {EXPECTED}"));
            }
            _ => return Err(EXPECTED.into()),
        }
        let authority = uri.authority().ok_or(EXPECTED)?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(format!(
                "{:?} is not a host name; {EXPECTED}",
                authority.as_str()
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "a path or query is not supported (each request keeps its own); {EXPECTED}"
            ));
        }
        let authority = match authority.port_u16() {
            Some(_) => authority.clone(),
            None => Authority::from_str(&format!("{}:80", authority.host()))
                .map_err(|e| format!("{e}; {EXPECTED}"))?,
        };
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
        Ok(Address {
            authority,
            host_header,
        })
    }

    /// `http://HOST:PORT` followed by `path`.
    pub fn uri(&self, path: Option<PathAndQuery>) -> Uri {
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.authority.clone())
            .path_and_query(path.unwrap_or_else(|| PathAndQuery::from_static("/")))
            .build()
            .expect("a scheme, an authority and a path make a URI")
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// The wasi:http hooks of every plugin store: requests the plugin sends on go
/// to the upstream, whatever scheme and authority it gave them.
#[derive(Clone)]
pub struct Upstream {
    address: Address,
    client: Client<HttpConnector, WasiBody>,
    /// How long the upstream may take to answer once the request is whole.
    timeout: Duration,
    /// How long the client may take to send its request's body.
    body_timeout: Duration,
}

impl Upstream {
    /// A pooled client for `address` (at most `max_idle` idle connections)
    /// that gives up on an answer `timeout` after the request's body is
    /// whole, and on a body that takes longer than `body_timeout`; needs a
    /// tokio runtime when used.
    pub fn new(
        address: Address,
        timeout: Duration,
        body_timeout: Duration,
        max_idle: usize,
    ) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(max_idle)
            .build(connector);
        Upstream {
            address,
            client,
            timeout,
            body_timeout,
        }
    }

    /// Where requests go.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

/// A response future, as the hooks hand it to wasmtime-wasi-http.
type Sent = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Upstream {
    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _response_result: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().cloned();
        parts.uri = self.address.uri(path);
        parts.headers.insert(HOST, self.address.host_header.clone());
        let (body, watch) = body::watched(body);
        let sent = self.client.request(http::Request::from_parts(parts, body));
        let (timeout, body_timeout) = (self.timeout, self.body_timeout);
        Box::new(async move {
            let mut response = answer(sent, watch, body_timeout, timeout).await?;
            // Only the proxy says what the breaker did.
            response.headers_mut().remove(TRIPSWITCH_HEADER);
            let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(std::future::ready(Ok(())));
            Ok((response, done))
        })
    }
}

/// The error a request gets when its client's body did not arrive whole in
/// time: one that blames the request, which the middleware counts as ignored.
fn client_body_failed() -> HttpError {
    HttpError::HttpRequestBodySize(None)
}

/// The upstream's answer to a request: the client has `body_timeout` to send
/// its body (the upstream may answer sooner), then the upstream `timeout`.
async fn answer<F>(
    sent: F,
    mut watch: body::Watch,
    body_timeout: Duration,
    timeout: Duration,
) -> Result<http::Response<hyper::body::Incoming>, HttpError>
where
    F: Future<Output = Result<http::Response<hyper::body::Incoming>, LegacyError>>,
{
    let mut sent = std::pin::pin!(sent);
    let blame = |error: LegacyError, watch: &body::Watch| match watch.now() {
        Progress::Failed => client_body_failed(),
        _ => classify(error),
    };
    tokio::select! {
        biased;
        result = &mut sent => return result.map_err(|e| blame(e, &watch)),
        progress = watch.settled() => if progress == Progress::Failed {
            return Err(client_body_failed());
        },
        () = tokio::time::sleep(body_timeout) => return Err(if watch.client_behind() {
            client_body_failed()
        } else {
            // The upstream did not take the body in time.
            HttpError::ConnectionWriteTimeout
        }),
    }
    match tokio::time::timeout(timeout, sent).await {
        Ok(result) => result.map_err(|e| blame(e, &watch)),
        Err(_elapsed) => Err(HttpError::ConnectionReadTimeout),
    }
}

/// The wasi:http error for a request the upstream did not answer.
fn classify(error: LegacyError) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut io_kind = None;
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            break;
        }
        source = cause.source();
    }
    use std::io::ErrorKind;
    match io_kind {
        Some(ErrorKind::ConnectionRefused) => HttpError::ConnectionRefused,
        Some(ErrorKind::TimedOut) if error.is_connect() => HttpError::ConnectionTimeout,
        Some(ErrorKind::TimedOut) => HttpError::ConnectionReadTimeout,
        Some(ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe) => {
            HttpError::ConnectionTerminated
        }
        _ if error.is_connect() => HttpError::DestinationUnavailable,
        _ => HttpError::InternalError(Some(format!("upstream: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_upstream_text_is_parsed_or_refused_by_name(
            text in prop_oneof![any::<String>(), "http://[a-z0-9.:@\\[\\]/?#%]{0,30}"]
        ) {
            if let Err(problem) = Address::parse(&text) {
                prop_assert!(problem.contains("http://HOST:PORT"), "{problem}");
            }
        }
    }

    #[test]
    fn upstream_addresses() {
        let ok = |text: &str| Address::parse(text).map(|a| a.to_string());
        assert_eq!(
            ok("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(ok("http://example.com/").unwrap(), "http://example.com:80");
        for bad in [
            "127.0.0.1:8080",
            "https://example.com:443",
            "ftp://example.com",
            "http://example.com:8080/api",
            "http://example.com:8080/?a=1",
            "http://user@example.com:80",
            "not a url",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
