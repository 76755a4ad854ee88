//! The answers the middleware gives itself, without calling the next handler.

use crate::bindings::tripswitch::breaker::types::Rejection;
use crate::bindings::wasi::http::types::{ErrorCode, Fields, Response};
use crate::bindings::{wit_future, wit_stream};

/// 503 for a rejected request, with `Retry-After` in whole seconds (rounded
/// up) when waiting will help, and an `x-tripswitch` header saying why.
pub fn rejected(breaker: &str, rejection: &Rejection) -> Response {
    let (reason, retry_after_ms, text) = match rejection {
        Rejection::Open(ms) => ("open", Some(*ms), "is open".to_owned()),
        Rejection::HalfOpenFull(ms) => (
            "half-open-full",
            Some(*ms),
            "is half-open and its trial slots are taken".to_owned(),
        ),
        Rejection::ForcedOpen => ("forced-open", None, "is forced open".to_owned()),
        // The detail may name the storage's address: the outage log line
        // has it, the client does not.
        Rejection::StorageUnavailable(_) => (
            "storage-unavailable",
            None,
            "cannot reach its storage".to_owned(),
        ),
    };
    let mut headers = vec![("x-tripswitch", reason.to_owned())];
    let mut body = format!("tripswitch: circuit {breaker:?} {text}");
    if let Some(ms) = retry_after_ms {
        let seconds = ms.div_ceil(1000);
        headers.push(("retry-after", seconds.to_string()));
        body.push_str(&format!("; retry in {seconds} s"));
    }
    body.push('\n');
    plain(503, &headers, body)
}

/// 500 for every request while the settings are wrong, saying what is wrong.
pub fn misconfigured(message: &str) -> Response {
    plain(
        500,
        &[("x-tripswitch", "bad-configuration".to_owned())],
        format!("tripswitch: bad configuration: {message}\n"),
    )
}

/// A plain-text response.
fn plain(status: u16, extra: &[(&str, String)], body: String) -> Response {
    let mut entries = vec![
        (
            "content-type".to_owned(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (
            "content-length".to_owned(),
            body.len().to_string().into_bytes(),
        ),
    ];
    entries.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes())),
    );
    let headers = Fields::from_list(&entries).expect("fixed, valid header names and values");
    let (mut contents, contents_rx) = wit_stream::new::<u8>();
    let (trailers, trailers_rx) = wit_future::new::<Result<Option<Fields>, ErrorCode>>(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
    // Status codes the middleware uses are all valid.
    let _ = response.set_status_code(status);
    wit_bindgen::spawn_local(async move {
        contents.write_all(body.into_bytes()).await;
        drop(contents);
        let _ = trailers.write(Ok(None)).await;
    });
    response
}
