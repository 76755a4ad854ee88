//! An axum app with a breaker in front of a flaky handler: `cargo run -p
//! tripswitch --example axum --features tower`, then `curl localhost:3000/`.
//! A 5xx counts as a failure; three in a row open the circuit, and then the
//! handler is not called: the app answers 503 with Retry-After at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tripswitch::CircuitBreaker;
use tripswitch::tower::{CircuitBreakerLayer, ServerErrorsFail, ServiceError};

/// Whether the dependency behind the handler is down (a test flips it).
#[derive(Clone, Default)]
pub struct Dependency(pub Arc<AtomicBool>);

async fn handler(State(down): State<Dependency>) -> Response {
    if down.0.load(Ordering::Relaxed) {
        (StatusCode::BAD_GATEWAY, "the dependency failed\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

/// A refusal as an HTTP answer: 503, with Retry-After when the breaker knows.
async fn refused(error: ServiceError<Infallible>) -> Response {
    let seconds = error
        .retry_after()
        .map(|wait| wait.as_secs_f64().ceil() as u64);
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response();
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert("retry-after", seconds.max(1).into());
    }
    response
}

/// The app: every route behind `breaker`.
pub fn app(breaker: CircuitBreaker, dependency: Dependency) -> Router {
    Router::new()
        .route("/", get(handler))
        .with_state(dependency)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(refused))
                .layer(CircuitBreakerLayer::new(breaker).classifier(ServerErrorsFail)),
        )
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let breaker = CircuitBreaker::builder("upstream")
        .fail_max(3)
        .reset_timeout(Duration::from_secs(10))
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app(breaker, Dependency::default())).await?;
    Ok(())
}
