//! The answers the middleware gives itself, without calling the next handler.

use crate::bindings::tripswitch::breaker::types::Rejection;
use crate::bindings::wasi::http::types::{ErrorCode, Fields, Response};
use crate::bindings::{wit_future, wit_stream};
use tripswitch_plugin_settings::{Refused, TRIPSWITCH_HEADER, refusal};

/// The proxies' answer to a rejected request (503, `Retry-After`, `x-tripswitch`).
pub fn rejected(breaker: &str, rejection: &Rejection) -> Response {
    let refused = match rejection {
        Rejection::Open(ms) => Refused::Open(*ms),
        Rejection::HalfOpenFull(ms) => Refused::HalfOpenFull(*ms),
        Rejection::ForcedOpen => Refused::ForcedOpen,
        Rejection::StorageUnavailable(_) => Refused::StorageUnavailable,
    };
    let answer = refusal(breaker, refused);
    plain(answer.status, &answer.headers, answer.body)
}

/// 500 for every request while the settings are wrong, saying what is wrong.
pub fn misconfigured(message: &str) -> Response {
    plain(
        500,
        &[(TRIPSWITCH_HEADER, "bad-configuration".to_owned())],
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
