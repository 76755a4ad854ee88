//! What an answer to an admitted request counts as.
//!
//! Envoy tells where an answer came from in the `response.code_details`
//! property: `via_upstream` for the upstream's own response, which the
//! failure set judges; details naming an upstream failure (a reset, a
//! refused or dropped connection, a timeout, no healthy host) for a local
//! reply Envoy made because the upstream failed, which is a failure
//! whatever its status. Any other local reply (another filter answered, the
//! client went away) means the upstream was never asked: it counts nowhere.

use tripswitch_core::machine::Outcome;
use tripswitch_plugin_settings::StatusSet;

/// The code details of a response that came from the upstream.
pub const VIA_UPSTREAM: &str = "via_upstream";

/// Code details, by prefix, of local replies made because the upstream failed.
pub const UPSTREAM_FAILURES: [&str; 3] = ["upstream_", "no_healthy_upstream", "response_timeout"];

/// What a response with `status` and code details `details` counts as.
pub fn outcome(status: u16, details: Option<&str>, failure_status: &StatusSet) -> Outcome {
    match details {
        // Without details (an older Envoy), the status decides.
        None | Some(VIA_UPSTREAM) => judged(failure_status.contains(status)),
        Some(details) if UPSTREAM_FAILURES.iter().any(|p| details.starts_with(p)) => {
            Outcome::Failure
        }
        Some(_) => Outcome::Ignored,
    }
}

fn judged(failed: bool) -> Outcome {
    if failed {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fives() -> StatusSet {
        StatusSet::parse("500-599").unwrap()
    }

    #[test]
    fn the_upstreams_own_answer_is_judged_by_the_failure_set() {
        let only_502 = StatusSet::parse("502").unwrap();
        assert_eq!(
            outcome(200, Some("via_upstream"), &fives()),
            Outcome::Success
        );
        assert_eq!(
            outcome(404, Some("via_upstream"), &fives()),
            Outcome::Success
        );
        assert_eq!(
            outcome(503, Some("via_upstream"), &fives()),
            Outcome::Failure
        );
        assert_eq!(
            outcome(503, Some("via_upstream"), &only_502),
            Outcome::Success
        );
        assert_eq!(outcome(502, None, &only_502), Outcome::Failure);
    }

    #[test]
    fn envoys_replies_for_a_failed_upstream_fail_whatever_the_set() {
        let none_fail = StatusSet::parse("599").unwrap();
        for details in [
            "upstream_reset_before_response_started{connection_failure}",
            "upstream_reset_before_response_started{connection_termination}",
            "upstream_reset_before_response_started{remote_reset}",
            "response_timeout",
            "upstream_per_try_timeout",
            "no_healthy_upstream",
        ] {
            let status = if details.contains("timeout") {
                504
            } else {
                503
            };
            assert_eq!(
                outcome(status, Some(details), &none_fail),
                Outcome::Failure,
                "{details}"
            );
        }
    }

    #[test]
    fn a_reply_the_upstream_never_saw_counts_nowhere() {
        for details in [
            "ext_authz_denied",
            "downstream_remote_disconnect",
            "direct_response",
        ] {
            assert_eq!(
                outcome(503, Some(details), &fives()),
                Outcome::Ignored,
                "{details}"
            );
        }
    }
}
