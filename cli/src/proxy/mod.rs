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

mod metrics;
mod plugin;
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
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tripswitch::{CircuitBreaker, Config, State};
use tripswitch_plugin_settings::{self as settings, Fallback, Settings};
use wasmtime_wasi_http::handler::ProxyHandler;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

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
    /// How long the upstream may take to answer, in ms; a slower answer is a
    /// failure, and the client gets 504.
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    upstream_timeout_ms: u64,
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
reached (502) or does not answer in time (504) counts as a failure; a rejected
request gets 503 with Retry-After.";

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
    let upstream = Upstream::new(
        args.upstream.clone(),
        Duration::from_millis(args.upstream_timeout_ms),
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
        if let (Some(addr), Some(metrics)) = (&args.metrics, metrics) {
            let (listener, local) = listen(addr)?;
            line.push_str(&format!(", metrics on http://{local}/metrics"));
            tokio::spawn(metrics::serve(listener, metrics));
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout does not stop the proxy.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        drop(out);
        serve(listener, ProxyHandler::new(plugin)).await;
        Ok(())
    })
}

/// Binds `addr` for the runtime; the address it got.
fn listen(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("listening on {addr}"))?;
    Ok((listener, local))
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

/// Accepts connections until the process ends.
async fn serve(listener: tokio::net::TcpListener, handler: ProxyHandler<Plugin>) {
    loop {
        let stream = next_connection(&listener).await;
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(respond(&handler, request).await) }
            });
            // A client that goes away mid-request is not the proxy's error.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The next connection on `listener`. An error (out of file descriptors and
/// the like) is logged and waited out.
async fn next_connection(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(error) => {
                let on = listener
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                eprintln!("tripswitch proxy: accepting a connection on {on}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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
