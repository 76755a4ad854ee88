//! `tripswitch proxy --metrics`: the plugin's breakers in Prometheus' text
//! format (`GET /metrics`) on a listener of their own, under the host
//! library's names. The counters are what the plugin tells: its counts
//! (`tripswitch:plugins/counted`) and its state changes; the state and
//! window gauges come from a snapshot read at each scrape, through a
//! breaker of the host library's on the plugin's storage and settings.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tripswitch::telemetry::Meter;
use tripswitch::{CircuitBreaker, Outcome, Rejected, State};

use super::Timeouts;
use super::connections::Connections;

/// Makes the host library's breaker that reads a plugin breaker's snapshots.
type MakeBreaker = dyn Fn(&str) -> Result<CircuitBreaker, tripswitch::Error> + Send + Sync;

/// The proxy's metrics: a Prometheus recorder of its own (none is
/// installed globally) and the breakers it has heard of.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    make: Box<MakeBreaker>,
    breakers: Mutex<BTreeMap<String, Arc<Metered>>>,
    /// Held by the scrape that reads the storage now.
    scraping: Arc<tokio::sync::Mutex<()>>,
}

/// One breaker's meters, and the breaker its gauges are read through.
struct Metered {
    name: String,
    meter: Meter,
    /// None: it could not be built (the reason was logged).
    breaker: Option<CircuitBreaker>,
}

impl Metrics {
    /// Metrics for the breakers `make` builds (by name); `known` are shown
    /// from the first scrape, others once the plugin tells of them. Their
    /// gauges are read with `make`'s settings.
    pub fn new(make: Box<MakeBreaker>, known: &[&str]) -> Metrics {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, tripswitch::telemetry::describe);
        let metrics = Metrics {
            handle: recorder.handle(),
            recorder,
            make,
            breakers: Mutex::default(),
            scraping: Arc::default(),
        };
        for name in known {
            metrics.metered(name);
        }
        metrics
    }

    /// The breaker `name`'s meters, made the first time it is heard of
    /// (the breaker that reads its gauges is built outside the lock).
    fn metered(&self, name: &str) -> Arc<Metered> {
        let breakers = || self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(metered) = breakers().get(name) {
            return Arc::clone(metered);
        }
        let breaker = match (self.make)(name) {
            Ok(breaker) => Some(breaker),
            Err(error) => {
                eprintln!("tripswitch proxy: metrics: breaker {name:?} has no gauges: {error}");
                None
            }
        };
        let metered = Metered {
            name: name.to_owned(),
            meter: Meter::new(name),
            breaker,
        };
        Arc::clone(
            breakers()
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(metered)),
        )
    }

    /// Records into this recorder, whatever is installed globally.
    fn record(&self, breaker: &str, what: impl FnOnce(&Meter)) {
        let metered = self.metered(breaker);
        metrics::with_local_recorder(&self.recorder, || what(&metered.meter));
    }

    /// Counts an admitted call.
    pub fn admitted(&self, breaker: &str) {
        self.record(breaker, Meter::admitted);
    }

    /// Counts an admitted call's outcome.
    pub fn outcome(&self, breaker: &str, outcome: Outcome) {
        self.record(breaker, |meter| meter.outcome(outcome));
    }

    /// Counts a refused call.
    pub fn rejected(&self, breaker: &str, rejected: &Rejected) {
        self.record(breaker, |meter| meter.rejected(rejected));
    }

    /// Counts a notice.
    pub fn notice(&self, breaker: &str, notice: &tripswitch::Notice) {
        self.record(breaker, |meter| meter.notice(notice));
    }

    /// Counts a state change.
    pub fn transition(&self, breaker: &str, from: State, to: State, remote: bool) {
        self.record(breaker, |meter| meter.transition(from, to, remote));
    }

    /// The text of a scrape: every breaker's gauges read now (a breaker
    /// whose storage fails keeps the gauges of its last read), then the lot
    /// rendered. Blocks on the storage.
    fn render(&self) -> String {
        let breakers: Vec<Arc<Metered>> = self
            .breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for metered in breakers {
            if let Some(snapshot) = metered.breaker.as_ref().map(CircuitBreaker::snapshot) {
                match snapshot {
                    Ok(snapshot) => metrics::with_local_recorder(&self.recorder, || {
                        metered.meter.snapshot(&snapshot)
                    }),
                    Err(error) => eprintln!(
                        "tripswitch proxy: metrics: reading breaker {:?}: {error}",
                        metered.name
                    ),
                }
            }
        }
        self.handle.render()
    }
}

/// Scrapers' connections open at once; at the cap, a new one takes the
/// place of the oldest idle one.
const MAX_CONNECTIONS: usize = 16;
/// How long a scrape may wait for the one before it and for the storage.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, timeouts: Timeouts) {
    let connections = Connections::new(MAX_CONNECTIONS);
    loop {
        let stream = super::next_connection(&listener).await;
        let seat = connections.seat().await;
        let metrics = Arc::clone(&metrics);
        let tracked = seat.tracked();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let serving = tracked.serving();
                let metrics = Arc::clone(&metrics);
                async move {
                    let response = respond(&metrics, request).await;
                    drop(serving);
                    Ok::<_, Infallible>(response)
                }
            });
            super::serve_connection(stream, service, timeouts, &seat).await;
        });
    }
}

/// One request to the metrics listener.
async fn respond(
    metrics: &Arc<Metrics>,
    request: hyper::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let answer = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = http::Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        response
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if request.uri().path() != "/metrics" {
        return answer(
            StatusCode::NOT_FOUND,
            PLAIN,
            "not found: the metrics are at /metrics\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN,
            "method not allowed: GET /metrics\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // One scrape reads the storage at a time, on one blocking thread, and
    // none waits past the deadline.
    let scraped = tokio::time::timeout(SCRAPE_TIMEOUT, async {
        let turn = Arc::clone(&metrics.scraping).lock_owned().await;
        let metrics = Arc::clone(metrics);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            metrics.render()
        })
        .await
    })
    .await;
    match scraped {
        Ok(Ok(text)) => answer(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text,
        ),
        Ok(Err(error)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            PLAIN,
            format!("the metrics could not be read: {error}\n"),
        ),
        Err(_elapsed) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            PLAIN,
            format!(
                "the metrics could not be read within {} s (the storage is slow)\n",
                SCRAPE_TIMEOUT.as_secs()
            ),
        ),
    }
}
