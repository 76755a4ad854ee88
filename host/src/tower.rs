//! A breaker as tower middleware: [`CircuitBreakerLayer`] wraps any
//! `tower::Service` (axum, tonic, hyper, reqwest with tower). A call takes
//! its permit when it is made, not in `poll_ready`, so a service that is
//! polled but never called takes no trial slot; a response future dropped
//! before it finishes records `ignored`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::CircuitBreaker;
use crate::error::{Error, Rejected};
use crate::types::Outcome;

/// Decides what a call's result counts as.
pub trait Classify<Res, Err> {
    /// The outcome of `result`.
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome;
}

/// The default classifier: an `Err` is a failure, any `Ok` a success.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsFail;

impl<Res, Err> Classify<Res, Err> for ErrorsFail {
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// For HTTP services: an `Err` or a response with a 5xx status is a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerErrorsFail;

impl<B, Err> Classify<http::Response<B>, Err> for ServerErrorsFail {
    fn classify(&self, result: Result<&http::Response<B>, &Err>) -> Outcome {
        match result {
            Ok(response) if !response.status().is_server_error() => Outcome::Success,
            _ => Outcome::Failure,
        }
    }
}

impl<Res, Err, F> Classify<Res, Err> for F
where
    F: Fn(Result<&Res, &Err>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &Err>) -> Outcome {
        self(result)
    }
}

/// Why a call through the middleware did not return the inner service's response.
#[derive(Debug)]
pub enum ServiceError<E> {
    /// The breaker refused the call: the inner service was not called.
    Rejected(Rejected),
    /// The inner service failed.
    Inner(E),
    /// The breaker itself failed before the call (a corrupt record, say).
    Breaker(Error),
}

impl<E> ServiceError<E> {
    /// How long to wait before a call can be admitted, for a rejection that knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ServiceError::Rejected(rejected) => rejected.retry_after(),
            _ => None,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for ServiceError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Rejected(rejected) => rejected.fmt(f),
            ServiceError::Inner(error) => error.fmt(f),
            ServiceError::Breaker(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for ServiceError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Rejected(rejected) => Some(rejected),
            ServiceError::Inner(error) => Some(error),
            ServiceError::Breaker(error) => Some(error),
        }
    }
}

/// Wraps services in a [`CircuitBreakerService`] on one breaker.
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorsFail> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// The layer for `breaker`, with the default classifier ([`ErrorsFail`]).
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: ErrorsFail,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Judges results with `classifier` ([`ServerErrorsFail`], or a closure).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service behind a breaker: refused calls never reach it.
#[derive(Clone, Debug)]
pub struct CircuitBreakerService<S, C = ErrorsFail> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// The breaker this service reports to.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C, Req> Service<Req> for CircuitBreakerService<S, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Send,
    Req: Send + 'static,
    C: Classify<S::Response, S::Error> + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = ServiceError<S::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(ServiceError::Inner)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The service that was polled ready goes with the call (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let breaker = self.breaker.clone();
        let classifier = self.classifier.clone();
        Box::pin(async move {
            // The inner service is called only once the breaker admits the call.
            let (result, _tripped) = breaker
                .guard(
                    move || inner.call(request),
                    move |result| classifier.classify(result.as_ref()),
                )
                .await
                .map_err(|error| match error {
                    Error::Rejected(rejected) => ServiceError::Rejected(rejected),
                    error => ServiceError::Breaker(error),
                })?;
            result.map_err(ServiceError::Inner)
        })
    }
}
