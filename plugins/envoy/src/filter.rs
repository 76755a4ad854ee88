//! The filter bound to Envoy through the `proxy-wasm` crate: a root context
//! per plugin configuration (it reads the configuration, creates the shared
//! record and defines the metrics) and an HTTP context per request (acquire
//! at the request's headers, report at the response's, `ignored` if the
//! stream ends without one).

use std::cell::Cell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};
use tripswitch_core::breaker::{Admission, Breaker, Change, Denial, Notice, Port, Stored, Swap};
use tripswitch_core::machine::{Outcome, Permit, Record, Rejection, State};
use tripswitch_core::record;
use tripswitch_plugin_settings::{
    Refused, StatusSet, TRIPSWITCH_HEADER, refusal, state_change_line,
};

use crate::outcome::outcome;
use crate::plugin::Plugin;
use crate::register::{Register, SharedData, record_key, told_key};
use crate::stats;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { filter: None }));
}}

/// Envoy's shared data through the hostcalls.
struct Hostcalls;

impl SharedData for Hostcalls {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        !matches!(
            hostcalls::set_shared_data(key, Some(value), cas),
            Err(Status::CasMismatch)
        )
    }
}

/// The metric ids of one breaker, in this VM.
struct Metrics {
    admitted: u32,
    calls: [u32; 3],
    not_permitted: [u32; 4],
    states: [u32; 5],
    notices: [u32; 1],
}

impl Metrics {
    fn define(breaker: &str) -> Metrics {
        let counter =
            |name: String| hostcalls::define_metric(MetricType::Counter, &name).unwrap_or(0);
        let gauge = |name: String| hostcalls::define_metric(MetricType::Gauge, &name).unwrap_or(0);
        Metrics {
            admitted: counter(stats::admitted(breaker)),
            calls: stats::OUTCOMES.map(|o| counter(stats::calls(breaker, o))),
            not_permitted: stats::REFUSALS.map(|r| counter(stats::not_permitted(breaker, r))),
            states: stats::STATES.map(|s| gauge(stats::state(breaker, s))),
            notices: stats::NOTICES.map(|k| counter(stats::notices(breaker, k))),
        }
    }

    fn count(id: u32) {
        let _ = hostcalls::increment_metric(id, 1);
    }

    fn outcome(&self, outcome: Outcome) {
        if let Some(i) = stats::OUTCOMES.iter().position(|o| *o == outcome) {
            Metrics::count(self.calls[i]);
        }
    }

    fn refused(&self, refused: Refused) {
        let reason = refused.reason();
        if let Some(i) = stats::REFUSALS.iter().position(|r| r.reason() == reason) {
            Metrics::count(self.not_permitted[i]);
        }
    }

    fn notice(&self, notice: &Notice) {
        if let Some(i) = stats::NOTICES.iter().position(|k| *k == notice.kind) {
            Metrics::count(self.notices[i]);
        }
    }

    /// Sets the state gauges: 1 for `current`, 0 for the others.
    fn state(&self, current: State) {
        for (state, id) in stats::STATES.iter().zip(self.states) {
            let _ = hostcalls::record_metric(id, u64::from(*state == current));
        }
    }
}

/// The breaker's port: its record in shared data, its changes told once per Envoy.
struct Envoy {
    register: Register<Hostcalls>,
    metrics: Rc<Metrics>,
}

impl Port for Envoy {
    fn load(&self, key: &str) -> Result<Option<Stored>, String> {
        self.register.load(&record_key(key))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<Swap, String> {
        self.register
            .compare_and_swap(&record_key(key), expected, data)
    }

    fn state_changed(&self, breaker: &str, change: &Change) {
        if !self.register.claim(&told_key(breaker), change.generation) {
            return;
        }
        let line = state_change_line(
            breaker,
            change.previous.name(),
            change.current.name(),
            change.remote,
        );
        log(LogLevel::Info, &line);
        self.metrics.state(change.current);
    }

    fn noticed(&self, _breaker: &str, notice: &Notice) {
        // The message names the breaker.
        log(LogLevel::Warn, &format!("tripswitch: {}", notice.message));
        self.metrics.notice(notice);
    }
}

/// What the requests of one plugin configuration share in this VM.
struct Filter {
    breaker: Breaker<Envoy>,
    failure_status: StatusSet,
    metrics: Rc<Metrics>,
    /// Whether this VM is in a storage outage (logged when it starts and ends).
    outage: Cell<bool>,
}

impl Filter {
    fn outage(&self, failing: Option<&str>) {
        match failing {
            Some(message) if !self.outage.replace(true) => {
                log(
                    LogLevel::Warn,
                    &format!("tripswitch: storage failing: {message}"),
                );
            }
            None if self.outage.replace(false) => {
                let name = self.breaker.name();
                log(
                    LogLevel::Info,
                    &format!("tripswitch: breaker {name}: storage works again"),
                );
            }
            _ => {}
        }
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

struct Root {
    filter: Option<Rc<Filter>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let plugin = match std::str::from_utf8(&text)
            .map_err(|_| "the configuration is not UTF-8".to_owned())
            .and_then(Plugin::from_json)
        {
            Ok(plugin) => plugin,
            Err(message) => {
                log(
                    LogLevel::Error,
                    &format!("tripswitch: bad configuration: {message}"),
                );
                return false;
            }
        };
        let metrics = Rc::new(Metrics::define(&plugin.breaker));
        let register = Register::new(Hostcalls);
        // The first configure (Envoy's main thread, before any worker
        // serves) creates the keys; later ones (workers, reloads) keep them.
        if register.create(
            &record_key(&plugin.breaker),
            &record::encode(&Record::default()),
        ) {
            metrics.state(State::Closed);
        }
        register.create_told(&told_key(&plugin.breaker));
        let port = Envoy {
            register,
            metrics: metrics.clone(),
        };
        self.filter = Some(Rc::new(Filter {
            breaker: Breaker::new(plugin.breaker, plugin.config, port),
            failure_status: plugin.failure_status,
            metrics,
            outage: Cell::new(false),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let filter = self.filter.clone()?;
        Some(Box::new(Request {
            filter,
            permit: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request's permit, until its outcome is known.
struct Request {
    filter: Rc<Filter>,
    permit: Option<(Permit, bool)>,
}

impl Request {
    /// Reports the permit (if still held): a success the component called
    /// quiet is skipped, as the contract allows.
    fn finish(&mut self, outcome: Outcome) {
        let Some((permit, quiet_success)) = self.permit.take() else {
            return;
        };
        let filter = &self.filter;
        filter.metrics.outcome(outcome);
        if outcome == Outcome::Success && quiet_success {
            return;
        }
        if let Err(error) = filter.breaker.report(&permit, outcome, now_ms()) {
            log(
                LogLevel::Warn,
                &format!(
                    "tripswitch: an outcome was not recorded: {}",
                    error.message()
                ),
            );
        }
    }
}

impl Context for Request {}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let filter = self.filter.clone();
        let answer = filter.breaker.acquire(now_ms());
        let failing = match &answer {
            Ok(Admission { degraded, .. }) => degraded.as_deref(),
            Err(refusal) => match &refusal.denial {
                Denial::StorageUnavailable(message) => Some(message.as_str()),
                Denial::Rejected(_) => None,
            },
        };
        filter.outage(failing);
        match answer {
            Ok(admission) => {
                Metrics::count(filter.metrics.admitted);
                self.permit = Some((admission.permit, admission.quiet_success));
                Action::Continue
            }
            Err(refused) => {
                let refused = match refused.denial {
                    Denial::Rejected(Rejection::Open(ms)) => Refused::Open(ms),
                    Denial::Rejected(Rejection::HalfOpenFull(ms)) => Refused::HalfOpenFull(ms),
                    Denial::Rejected(Rejection::ForcedOpen) => Refused::ForcedOpen,
                    Denial::StorageUnavailable(_) => Refused::StorageUnavailable,
                };
                filter.metrics.refused(refused);
                let answer = refusal(filter.breaker.name(), refused);
                let mut headers = vec![("content-type", "text/plain; charset=utf-8")];
                headers.extend(answer.headers.iter().map(|(k, v)| (*k, v.as_str())));
                self.send_http_response(
                    u32::from(answer.status),
                    headers,
                    Some(answer.body.as_bytes()),
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.permit.is_some() {
            let status = self
                .get_http_response_header(":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let details = self
                .get_property(vec!["response", "code_details"])
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let outcome = outcome(status, details.as_deref(), &self.filter.failure_status);
            self.finish(outcome);
            // Only the filter says what the breaker did.
            self.set_http_response_header(TRIPSWITCH_HEADER, None);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // The stream ended with no response: the client went away.
        self.finish(Outcome::Ignored);
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.finish(Outcome::Ignored);
    }
}
