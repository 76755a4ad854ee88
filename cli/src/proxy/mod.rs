//! `tripswitch proxy`: a sidecar that serves an HTTP middleware plugin (a
//! wasi:http@0.3.0 component) in front of an upstream. The plugin decides
//! what to pass on and what to reject; what it passes on goes to the upstream;
//! its breaker's state lives in memory or in a Redis that several proxies
//! share.
//!
//! The plugin is configured by `TRIPSWITCH_*` variables: the proxy passes its
//! own to the plugin's WASI environment and checks them before it listens
//! (their syntax with `tripswitch-plugin-settings`, their values with the
//! breaker component itself). With `--metrics` it serves the plugin's
//! breakers in Prometheus' text format on a listener of its own.

mod body;
mod connections;
mod limits;
mod metrics;
mod plugin;
mod stall;
mod upstream;

use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use clap::Args;
use http::StatusCode;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tripswitch::{CircuitBreaker, Config, State};
use tripswitch_plugin_settings::{self as settings, Fallback, Settings};
use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use self::connections::Connections;
use self::metrics::Metrics;
use self::plugin::Plugin;
use self::upstream::{Address, Upstream};
use crate::store::StoreArgs;

/// Options of `tripswitch proxy`; the plugin's settings are `TRIPSWITCH_*`
/// environment variables.
#[derive(Args, Debug)]
#[command(after_help = SETTINGS_HELP)]
pub struct ProxyArgs {
    /// Where to accept requests, HOST:PORT (port 0: a free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the requests the plugin passes on go: http://HOST:PORT.
    #[arg(long, value_name = "URL", value_parser = Address::parse)]
    upstream: Address,
    /// How long the upstream may take to answer once the request's body is
    /// whole, in ms; a slower answer is a failure, and the client gets 504.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    upstream_timeout_ms: u64,
    /// How long a client may take to send a request's body, in ms, from its
    /// head; a body cut short or slower gets 408 and counts as ignored (the
    /// upstream timeout starts once the body is whole).
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_ms: u64,
    /// How long a client may take to send a request's head, in ms; an idle
    /// keep-alive connection is closed after as long.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_ms: u64,
    /// How long a client may leave its answer unread (taking no byte of
    /// it), in ms; then its connection is closed.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    send_timeout_ms: u64,
    /// Client connections open at once; at the cap, a new one replaces the
    /// oldest connection waiting for a request's head (lowered to fit the
    /// open-file limit, as said at start).
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Requests served at once; more get 503 at once, uncounted (lowered to
    /// fit the open-file limit, as said at start).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// The wasi:http middleware plugin (a component file) [default: the embedded one].
    #[arg(long, value_name = "FILE")]
    plugin: Option<PathBuf>,
    /// Serve the breakers' metrics in Prometheus' text format at
    /// http://ADDR/metrics, HOST:PORT (port 0: a free port, printed at start).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

const SETTINGS_HELP: &str = "\
The plugin's settings are environment variables, checked before the proxy listens:
  TRIPSWITCH_BREAKER              the breaker's name (its storage key)
  TRIPSWITCH_FAIL_MAX             consecutive failures that open the circuit
  TRIPSWITCH_RESET_TIMEOUT_MS     how long the circuit stays open before a trial
  TRIPSWITCH_SUCCESS_THRESHOLD    trial successes that close the circuit
  TRIPSWITCH_HALF_OPEN_MAX_CALLS  trials in flight at once in half-open
  TRIPSWITCH_TRIAL_TIMEOUT_MS     how long a trial may run before its slot is forfeited
  TRIPSWITCH_FALLBACK_STATE       closed, open or forced-open while the storage fails
  TRIPSWITCH_FAILURE_STATUS       upstream statuses counted as failures (like 500-599)
Knobs left unset take the breaker component's defaults. An upstream that cannot be
reached (502) or does not answer in time (504) counts as a failure; a request whose
body the client cut short or sent too slowly (408) counts as ignored; a rejected
request gets 503 with Retry-After and x-tripswitch.";

/// The middleware plugin built into this binary (composed with the embedded
/// breaker by the build script).
const EMBEDDED_PLUGIN: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tripswitch-middleware.wasm"));

/// Runs the proxy until the process is stopped.
pub fn run(args: &ProxyArgs) -> anyhow::Result<()> {
    let env = plugin_env()?;
    let settings = Settings::from_vars(env.iter().map(|(name, value)| (name, value)))
        .map_err(|error| anyhow!("invalid setting {error}"))?;
    check_knobs(&settings)?;
    let storage = args.store.storage()?;
    let (bytes, what) = match &args.plugin {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (EMBEDDED_PLUGIN.to_vec(), "the embedded plugin".to_string()),
    };
    let caps = limits::fit(
        limits::Caps {
            connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            in_flight: usize::try_from(args.max_in_flight).unwrap_or(usize::MAX),
        },
        limits::open_files(),
    );
    let upstream = Upstream::new(
        args.upstream.clone(),
        Duration::from_millis(args.upstream_timeout_ms),
        Duration::from_millis(args.body_timeout_ms),
        caps.in_flight,
    );
    let metrics = args.metrics.is_some().then(|| {
        let (config, storage) = (breaker_config(&settings), Arc::clone(&storage));
        let make = move |name: &str| {
            CircuitBreaker::builder(name)
                .config(config.clone())
                .storage(Arc::clone(&storage))
                .build()
        };
        // The embedded plugin's breaker is known before any request; another
        // plugin's breakers are shown once it tells of them.
        let known: &[&str] = match args.plugin {
            None => &[&settings.breaker],
            Some(_) => &[],
        };
        Arc::new(Metrics::new(Box::new(make), known))
    });
    let plugin = Plugin::load(&bytes, &what, upstream, storage, env, metrics.clone())
        .map_err(|e| anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        plugin.try_instantiate().await.map_err(|e| anyhow!(e))?;
        let (listener, local) = listen(&args.listen)?;
        let mut line = format!(
            "tripswitch proxy: listening on http://{local}, upstream {}, storage {}, breaker {:?}",
            plugin.upstream().address(),
            args.store.describe(),
            settings.breaker,
        );
        let header_timeout = Duration::from_millis(args.header_timeout_ms);
        if let (Some(addr), Some(metrics)) = (&args.metrics, metrics) {
            let (listener, local) = listen(addr)?;
            line.push_str(&format!(", metrics on http://{local}/metrics"));
            let timeouts = Timeouts {
                header: header_timeout,
                send: Duration::from_millis(args.send_timeout_ms),
            };
            tokio::spawn(metrics::serve(listener, metrics, timeouts));
        }
        line.push_str(&format!(
            ", at most {} connections and {} requests in flight",
            caps.connections, caps.in_flight
        ));
        let mut out = std::io::stdout().lock();
        // A closed stdout does not stop the proxy.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        drop(out);
        let handler = ProxyHandler::new(plugin);
        let timeouts = Timeouts {
            header: header_timeout,
            send: Duration::from_millis(args.send_timeout_ms),
        };
        serve(listener, handler, caps, timeouts).await;
        Ok(())
    })
}

/// Connections waiting to be accepted, as the listeners ask the kernel for.
const BACKLOG: u32 = 1024;

/// Binds `addr` for the runtime; the address it got.
fn listen(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let bound = || -> std::io::Result<tokio::net::TcpListener> {
        let address = std::net::ToSocketAddrs::to_socket_addrs(addr)?
            .next()
            .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
        let socket = match address {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        socket.listen(BACKLOG)
    };
    let listener = bound().with_context(|| format!("listening on {addr}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("listening on {addr}"))?;
    Ok((listener, local))
}

/// How long a client may keep a connection waiting.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// To send a request's head (or to idle between requests).
    pub header: Duration,
    /// To take any byte of its answer.
    pub send: Duration,
}

/// Serves HTTP/1 on `stream` with `service`, within `timeouts`, until the
/// client is done or the connection's `seat` is taken back.
pub(crate) async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    timeouts: Timeouts,
    seat: &connections::Seat,
) where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(stall::Stalling::new(stream, timeouts.send));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    // A client that goes away mid-request is not the proxy's error.
    tokio::select! {
        _ = connection.as_mut() => {}
        () = seat.evicted() => {
            // A connection that never got a whole head loses nothing; one
            // that served finishes sending what it was sending (within the
            // send timeout), then closes.
            if !seat.never_served() {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    }
}

/// The process's `TRIPSWITCH_*` variables: the plugin's environment.
fn plugin_env() -> anyhow::Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(settings::PREFIX)) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| anyhow!("invalid setting {name}: the value is not UTF-8"))?;
        vars.push((name.to_owned(), value));
    }
    vars.sort();
    Ok(vars)
}

/// The plugin's knobs as the host library's config.
fn breaker_config(settings: &Settings) -> Config {
    let knobs = &settings.knobs;
    Config {
        fail_max: knobs.fail_max,
        reset_timeout_ms: knobs.reset_timeout_ms,
        success_threshold: knobs.success_threshold,
        half_open_max_calls: knobs.half_open_max_calls,
        trial_timeout_ms: knobs.trial_timeout_ms,
        fallback_state: knobs.fallback_state.map(|fallback| match fallback {
            Fallback::Closed => State::Closed,
            Fallback::Open => State::Open,
            Fallback::ForcedOpen => State::ForcedOpen,
        }),
        failure_rate_threshold: knobs.failure_rate_threshold,
        minimum_calls: knobs.minimum_calls,
        window_ms: knobs.window_ms,
        window_calls: knobs.window_calls,
        slow_call_ms: knobs.slow_call_ms,
        slow_call_rate_threshold: knobs.slow_call_rate_threshold,
        backoff_multiplier: knobs.backoff_multiplier,
        max_reset_timeout_ms: knobs.max_reset_timeout_ms,
        // The plugin merges every report (its instances are dropped unflushed).
        flush_interval_ms: Some(0),
    }
}

/// Builds a breaker with the plugin's knobs: the component, which owns the
/// valid ranges and the defaults, refuses what it would refuse in the plugin.
fn check_knobs(settings: &Settings) -> anyhow::Result<()> {
    let built = CircuitBreaker::builder(settings.breaker.clone())
        .config(breaker_config(settings))
        .build();
    built.map(drop).map_err(|error| match &error {
        tripswitch::Error::InvalidConfig { field, .. } => {
            anyhow!("invalid setting {}: {error}", settings::variable_for(field))
        }
        _ => anyhow!(error).context("checking the breaker's settings"),
    })
}

/// Accepts connections until the process ends, at most `caps` of them and
/// of their requests at once.
async fn serve(
    listener: tokio::net::TcpListener,
    handler: ProxyHandler<Plugin>,
    caps: limits::Caps,
    timeouts: Timeouts,
) {
    let connections = Connections::new(caps.connections);
    let in_flight = Arc::new(Semaphore::new(caps.in_flight));
    loop {
        let stream = next_connection(&listener).await;
        let seat = connections.seat().await;
        let _ = stream.set_nodelay(true);
        let (handler, in_flight) = (handler.clone(), Arc::clone(&in_flight));
        let tracked = seat.tracked();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let serving = tracked.serving();
                let admitted = Arc::clone(&in_flight).try_acquire_owned();
                let handler = handler.clone();
                async move {
                    let Some(serving) = serving else {
                        return Ok::<_, Infallible>(closing());
                    };
                    let Ok(slot) = admitted else {
                        return Ok(overloaded(caps.in_flight));
                    };
                    let response = respond(&handler, request).await;
                    // The request counts as served until its answer is sent.
                    let held = (serving, slot);
                    Ok(response.map(|body| {
                        body.map_err(move |error| {
                            let _ = &held;
                            error
                        })
                        .boxed_unsync()
                    }))
                }
            });
            serve_connection(stream, service, timeouts, &seat).await;
        });
    }
}

/// The next connection on `listener`. An error (out of file descriptors and
/// the like) is logged once per second at most, and waited out.
pub(crate) async fn next_connection(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    let mut last_told: Option<tokio::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(error) => {
                if last_told.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    last_told = Some(tokio::time::Instant::now());
                    let on = listener
                        .local_addr()
                        .map_or_else(|_| "?".into(), |a| a.to_string());
                    eprintln!("tripswitch proxy: accepting a connection on {on}: {error}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// 503 for a request on a connection taken back for another client (the
/// breaker never sees it); the connection closes.
fn closing() -> http::Response<WasiBody> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "the proxy is at its connection limit; retry on a new connection\n".into(),
    );
    response
        .headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}

/// 503 for a request beyond `--max-in-flight` (the breaker never sees it).
fn overloaded(max: usize) -> http::Response<WasiBody> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the proxy is serving its limit of {max} requests at once; retry\n"),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}

/// One request through the plugin.
async fn respond(
    handler: &ProxyHandler<Plugin>,
    request: hyper::Request<Incoming>,
) -> http::Response<WasiBody> {
    let (mut parts, body) = request.into_parts();
    // The plugin sees the upstream's address; what it passes on goes there.
    parts.uri = handler
        .state()
        .upstream()
        .address()
        .uri(parts.uri.path_and_query().cloned());
    let body = body.map_err(HttpError::from).boxed_unsync();
    match handler
        .handle((), http::Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response,
        Err(error) => match error.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::ConnectionReadTimeout) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout: the upstream did not answer in time\n".into(),
            ),
            Some(ErrorCode::ConnectionWriteTimeout) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway timeout: the upstream did not take the request's body in time\n".into(),
            ),
            Some(ErrorCode::HttpRequestBodySize(_)) => plain(
                StatusCode::REQUEST_TIMEOUT,
                "request timeout: the request's body was cut short or did not arrive in time\n"
                    .into(),
            ),
            Some(code) => plain(
                StatusCode::BAD_GATEWAY,
                format!("bad gateway: the upstream failed ({code:?})\n"),
            ),
            None => {
                eprintln!("tripswitch proxy: the plugin failed: {error:#}");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the proxy's plugin failed\n".into(),
                )
            }
        },
    }
}

/// A plain-text response of the proxy's own.
fn plain(status: StatusCode, text: String) -> http::Response<WasiBody> {
    let body = Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_checks_the_values() {
        let settings = |vars: &[(&str, &str)]| Settings::from_vars(vars.iter().copied()).unwrap();
        check_knobs(&settings(&[])).unwrap();
        check_knobs(&settings(&[("TRIPSWITCH_FAIL_MAX", "3")])).unwrap();
        let error = check_knobs(&settings(&[("TRIPSWITCH_FAIL_MAX", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid setting TRIPSWITCH_FAIL_MAX: invalid fail-max"),
            "{error}"
        );
        let error = check_knobs(&settings(&[("TRIPSWITCH_RESET_TIMEOUT_MS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("TRIPSWITCH_RESET_TIMEOUT_MS"), "{error}");
    }
}
