//! Whose failure an error of the next handler is: an error that blames the
//! request (its body cut short or too slow, a header too large, a bad URI)
//! was caused by the client and counts as `ignored`; any other (the
//! upstream refused, reset, timed out) is the upstream's and counts as a
//! failure. So no client can open the breaker for everyone else.

use crate::bindings::tripswitch::breaker::types::Outcome;
use crate::bindings::wasi::http::types::ErrorCode;

/// What the next handler's `error` counts as.
pub fn outcome_of(error: &ErrorCode) -> Outcome {
    match error {
        ErrorCode::HttpRequestDenied
        | ErrorCode::HttpRequestLengthRequired
        | ErrorCode::HttpRequestBodySize(_)
        | ErrorCode::HttpRequestMethodInvalid
        | ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestHeaderSectionSize(_)
        | ErrorCode::HttpRequestHeaderSize(_)
        | ErrorCode::HttpRequestTrailerSectionSize(_)
        | ErrorCode::HttpRequestTrailerSize(_) => Outcome::Ignored,
        _ => Outcome::Failure,
    }
}
