//! The filter's Envoy metrics, named like the `tripswitch_*` metrics of the
//! other hosts. Envoy gives a wasm metric no labels, so the breaker and the
//! label values are parts of the name, separated by dots (Envoy's own
//! style, which its `stats_tags` can turn back into labels); `/stats` shows
//! them as they are. The `stats_tags` rules of the README's `envoy.yaml`
//! make `/stats/prometheus` show `tripswitch_calls_total{breaker="orders",
//! outcome="failure"}`; without them, the dots become underscores. A dot in
//! a breaker's name is written as `_` in its metric names.

use tripswitch_core::breaker::NoticeKind;
use tripswitch_core::machine::{Outcome, State};
use tripswitch_core::metrics as names;
use tripswitch_plugin_settings::Refused;

/// The states a breaker's state gauges cover, in order.
pub const STATES: [State; 5] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
];

/// The outcomes, in the order of the filter's metric ids.
pub const OUTCOMES: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Ignored];

/// The refusals, in the order of the filter's metric ids.
pub const REFUSALS: [Refused; 4] = [
    Refused::Open(0),
    Refused::HalfOpenFull(0),
    Refused::ForcedOpen,
    Refused::StorageUnavailable,
];

/// The notice kinds, in the order of the filter's metric ids.
pub const NOTICES: [NoticeKind; 1] = [NoticeKind::WindowRestarted];

/// A breaker's name as a part of a metric name.
fn part(breaker: &str) -> String {
    breaker.replace('.', "_")
}

/// Calls the breaker admitted.
pub fn admitted(breaker: &str) -> String {
    format!("{}.breaker.{}", names::ADMITTED, part(breaker))
}

/// Admitted calls that ended with `outcome`.
pub fn calls(breaker: &str, outcome: Outcome) -> String {
    let outcome = match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Ignored => "ignored",
    };
    format!(
        "{}.breaker.{}.outcome.{outcome}",
        names::CALLS,
        part(breaker)
    )
}

/// Calls refused, for one reason.
pub fn not_permitted(breaker: &str, refused: Refused) -> String {
    format!(
        "{}.breaker.{}.reason.{}",
        names::NOT_PERMITTED,
        part(breaker),
        refused.reason()
    )
}

/// A gauge that is 1 while the breaker is in `state` (as last told), else 0.
pub fn state(breaker: &str, state: State) -> String {
    format!(
        "{}.breaker.{}.state.{}",
        names::STATE,
        part(breaker),
        state.name()
    )
}

/// Notices of one kind.
pub fn notices(breaker: &str, kind: NoticeKind) -> String {
    format!(
        "{}.breaker.{}.kind.{}",
        names::NOTICES,
        part(breaker),
        kind.name()
    )
}

/// Every metric of one breaker, for defining them up front.
pub fn all(breaker: &str) -> Vec<String> {
    let mut names = vec![admitted(breaker)];
    names.extend(OUTCOMES.iter().map(|o| calls(breaker, *o)));
    names.extend(REFUSALS.iter().map(|r| not_permitted(breaker, *r)));
    names.extend(STATES.iter().map(|s| state(breaker, *s)));
    names.extend(NOTICES.iter().map(|k| notices(breaker, *k)));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_breaker_and_the_label_values() {
        assert_eq!(
            calls("orders", Outcome::Failure),
            "tripswitch_calls_total.breaker.orders.outcome.failure"
        );
        assert_eq!(
            not_permitted("orders", Refused::HalfOpenFull(5)),
            "tripswitch_not_permitted_calls_total.breaker.orders.reason.half-open-full"
        );
        assert_eq!(
            state("orders", State::HalfOpen),
            "tripswitch_state.breaker.orders.state.half-open"
        );
        assert_eq!(
            admitted("eu.orders"),
            "tripswitch_admitted_calls_total.breaker.eu_orders"
        );
        let all = all("orders");
        assert_eq!(all.len(), 14);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
    }
}
