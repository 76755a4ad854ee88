//! The upstream: where the plugin's "next handler" sends requests, through one
//! pooled HTTP/1 client shared by every plugin instance.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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
    /// How long the upstream may take to answer a request's head.
    timeout: Duration,
}

impl Upstream {
    /// A pooled client for `address` that gives up on an answer after
    /// `timeout`; needs a tokio runtime when used.
    pub fn new(address: Address, timeout: Duration) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Upstream {
            address,
            client,
            timeout,
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
        mut request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _response_result: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let path = request.uri().path_and_query().cloned();
        *request.uri_mut() = self.address.uri(path);
        request
            .headers_mut()
            .insert(HOST, self.address.host_header.clone());
        let sent = self.client.request(request);
        let timeout = self.timeout;
        Box::new(async move {
            let response = tokio::time::timeout(timeout, sent)
                .await
                .map_err(|_elapsed| HttpError::ConnectionReadTimeout)?
                .map_err(classify)?;
            let response = response.map(|body| body.map_err(HttpError::from).boxed_unsync());
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(std::future::ready(Ok(())));
            Ok((response, done))
        })
    }
}

/// The wasi:http error for a request the upstream did not answer.
fn classify(error: hyper_util::client::legacy::Error) -> HttpError {
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
