//! The answer a proxy plugin gives a refused request, the same in every
//! proxy: 503, `x-tripswitch: <why>`, `Retry-After` in whole seconds
//! (rounded up) when waiting will help, and a one-line body.

/// The header that says why a proxy refused a request; the proxies remove
/// it from upstream answers, so that it is only ever theirs.
pub const TRIPSWITCH_HEADER: &str = "x-tripswitch";

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The circuit is open; a trial is admitted in this many ms.
    Open(u64),
    /// The trial slots are taken; one frees in this many ms.
    HalfOpenFull(u64),
    /// An operator forced the circuit open.
    ForcedOpen,
    /// The storage failed and the fallback refuses.
    StorageUnavailable,
}

impl Refused {
    /// The `x-tripswitch` value: `open`, `half-open-full`, `forced-open` or
    /// `storage-unavailable`.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Open(_) => "open",
            Refused::HalfOpenFull(_) => "half-open-full",
            Refused::ForcedOpen => "forced-open",
            Refused::StorageUnavailable => "storage-unavailable",
        }
    }
}

/// The answer to a refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status: 503.
    pub status: u16,
    /// Headers besides the content type and length.
    pub headers: Vec<(&'static str, String)>,
    /// One line of text.
    pub body: String,
}

/// How a proxy answers a request that breaker `breaker` refused.
pub fn refusal(breaker: &str, refused: Refused) -> Refusal {
    let (retry_after_ms, text) = match refused {
        Refused::Open(ms) => (Some(ms), "is open"),
        Refused::HalfOpenFull(ms) => (Some(ms), "is half-open and its trial slots are taken"),
        Refused::ForcedOpen => (None, "is forced open"),
        // The detail may name the storage's address: the outage log line
        // has it, the client does not.
        Refused::StorageUnavailable => (None, "cannot reach its storage"),
    };
    let mut headers = vec![(TRIPSWITCH_HEADER, refused.reason().to_owned())];
    let mut body = format!("tripswitch: circuit {breaker:?} {text}");
    if let Some(ms) = retry_after_ms {
        let seconds = ms.div_ceil(1000);
        headers.push(("retry-after", seconds.to_string()));
        body.push_str(&format!("; retry in {seconds} s"));
    }
    body.push('\n');
    Refusal {
        status: 503,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_circuit_says_when_to_retry_in_whole_seconds() {
        let answer = refusal("orders", Refused::Open(1001));
        assert_eq!(answer.status, 503);
        assert_eq!(
            answer.headers,
            [("x-tripswitch", "open".into()), ("retry-after", "2".into())]
        );
        assert_eq!(
            answer.body,
            "tripswitch: circuit \"orders\" is open; retry in 2 s\n"
        );
        let full = refusal("orders", Refused::HalfOpenFull(1000));
        assert_eq!(full.headers[1], ("retry-after", "1".into()));
        assert_eq!(full.headers[0].1, "half-open-full");
    }

    #[test]
    fn waiting_does_not_help_a_forced_open_circuit_or_a_lost_storage() {
        for (refused, reason) in [
            (Refused::ForcedOpen, "forced-open"),
            (Refused::StorageUnavailable, "storage-unavailable"),
        ] {
            let answer = refusal("orders", refused);
            assert_eq!(answer.headers, [("x-tripswitch", reason.into())]);
            assert!(!answer.body.contains("retry"), "{}", answer.body);
        }
    }
}
