//! The breaker as wasi:http middleware (WASIp3): a request reaches the next
//! handler only when the breaker admits it; 5xx answers (a configurable set)
//! and the upstream's transport errors count as failures, errors that blame
//! the request (the client's) as ignored, the rest as successes; a rejected
//! request gets 503 with `Retry-After` at once. What it counts it tells its
//! host through `tripswitch:plugins/counted`.
//!
//! The breaker itself is the tripswitch component this one is composed with;
//! its state lives in the host's storage, since hosts recycle instances.

mod bindings {
    wit_bindgen::generate!({
        world: "tripswitch:plugins/middleware",
        path: ["../../wit", "../wit"],
        generate_all,
    });
}
mod blame;
mod outage;
mod reply;
mod steps;

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use bindings::exports::wasi::http::handler::Guest;
use bindings::tripswitch::breaker::breaker::CircuitBreaker;
use bindings::tripswitch::breaker::types::{
    Admission, Answer, BreakerError, CallReport, Config, ConfigError, Outcome, Permit, Refusal,
    Request as Operation, State,
};
use bindings::tripswitch::plugins::counted;
use bindings::wasi::http::handler as next;
use bindings::wasi::http::types::{ErrorCode, Request, Response};
use tripswitch_plugin_settings::{Fallback, Settings, StatusSet, variable_for};

/// The middleware's state in one instance: built at its first request.
struct Middleware {
    breaker: CircuitBreaker,
    /// The breaker's name.
    name: String,
    failure_status: StatusSet,
    outage: outage::Outage,
}

thread_local! {
    static MIDDLEWARE: OnceCell<Result<Rc<Middleware>, String>> = const { OnceCell::new() };
}

impl Middleware {
    /// Reads the settings from the environment and makes the breaker.
    fn from_env() -> Result<Rc<Middleware>, String> {
        let settings = Settings::from_vars(std::env::vars()).map_err(|e| e.to_string())?;
        let knobs = &settings.knobs;
        let config = Config {
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
            // This host drops instances without a flush: merge every report.
            flush_interval_ms: Some(0),
        };
        let breaker = CircuitBreaker::create(&settings.breaker, config).map_err(
            |ConfigError::Invalid((field, reason))| format!("{}: {reason}", variable_for(&field)),
        )?;
        Ok(Rc::new(Middleware {
            breaker,
            name: settings.breaker,
            failure_status: settings.failure_status,
            outage: outage::Outage::default(),
        }))
    }
}

/// Unix time in ms.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Reports a permit when dropped: `ignored` unless an outcome was set, so a
/// request abandoned by its client frees its trial slot.
struct Pending<'a> {
    middleware: &'a Middleware,
    permit: Option<Permit>,
    quiet_success: bool,
}

impl Pending<'_> {
    /// Records the outcome. A success the component called quiet is not
    /// reported: this host cannot tell the stored version without a round
    /// trip, so, as the contract allows such a host, it skips it always.
    fn report(mut self, outcome: Outcome) {
        if let Some(permit) = self.permit.take() {
            if !(outcome == Outcome::Success && self.quiet_success) {
                report(self.middleware, permit, outcome);
            }
            tell(self.middleware, outcome);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            report(self.middleware, permit, Outcome::Ignored);
            tell(self.middleware, Outcome::Ignored);
        }
    }
}

fn report(middleware: &Middleware, permit: Permit, outcome: Outcome) {
    let request = Operation::Report(CallReport { permit, outcome });
    let answer = steps::run(&middleware.breaker, &middleware.name, request, now_ms());
    let error = match answer {
        Answer::Reported(Ok(_)) => return,
        Answer::Reported(Err(error)) => error,
        _ => BreakerError::Storage("the breaker answered another request".into()),
    };
    middleware.outage.unrecorded(&middleware.name, &error);
}

/// Acquire's answer.
fn acquire(middleware: &Middleware) -> Result<Admission, Refusal> {
    match steps::run(
        &middleware.breaker,
        &middleware.name,
        Operation::Acquire,
        now_ms(),
    ) {
        Answer::Acquired(answer) => answer,
        _ => unreachable!("the breaker answers acquire with an admission or a refusal"),
    }
}

/// Tells the host an admitted request's outcome (reported to the breaker or not).
fn tell(middleware: &Middleware, outcome: Outcome) {
    counted::reported(&middleware.name, outcome);
}

struct Component;

impl Guest for Component {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let middleware =
            match MIDDLEWARE.with(|cell| cell.get_or_init(Middleware::from_env).clone()) {
                Ok(middleware) => middleware,
                Err(message) => {
                    eprintln!("tripswitch: bad configuration: {message}");
                    return Ok(reply::misconfigured(&message));
                }
            };
        let name = &middleware.name;
        let answer = acquire(&middleware);
        middleware.outage.note(name, &answer);
        let Admission {
            permit,
            quiet_success,
            ..
        } = match answer {
            Ok(admission) => admission,
            Err(refusal) => {
                let reply = reply::rejected(name, &refusal.rejection);
                counted::rejected(name, &refusal);
                return Ok(reply);
            }
        };
        counted::admitted(name);
        let pending = Pending {
            middleware: &middleware,
            permit: Some(permit),
            quiet_success,
        };
        let result = next::handle(request).await;
        pending.report(match &result {
            Ok(response)
                if middleware
                    .failure_status
                    .contains(response.get_status_code()) =>
            {
                Outcome::Failure
            }
            Ok(_) => Outcome::Success,
            Err(error) => blame::outcome_of(error),
        });
        result
    }
}

bindings::export!(Component with_types_in bindings);
