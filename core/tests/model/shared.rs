//! Several breakers sharing one storage agree with the model: answers,
//! holds, quiet successes, reports, events, generations and loads, with
//! hosts reusing answers that hold; and no failure is lost between them.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tripswitch_core::breaker::{Admission, Change, Denial, Holds, Refusal, Reported};
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Outcome, Permit, Reason, Rejection, State};

use crate::reference::{Model, Ticket, check_record, check_snapshot, permit_answer, ticket_answer};
use crate::reuse::{check_lapsed, check_reuse, holds_at, holds_of};
use crate::storage::{Answered, Heard, Shared, acquire, check_shared, instances, operate};
use crate::strategies::{Ask, Op, config, ops, settings, start};

proptest! {
    #![proptest_config(settings())]

    /// The same runs as the model's, interleaved over 2-3 instances on one
    /// storage, with plain acquires and acquires at a host-named version:
    /// the stored record follows the model, every state change fires
    /// exactly one local event from its writer, every change an instance
    /// finds fires one remote event telling the writer's time, generation
    /// and reason (a first look that finds other than closed is such a
    /// change), generations move by one on a state change or an operator
    /// action and never otherwise, every call makes the loads its cache calls
    /// for, a refusal tells the state that refused, every answer holds as
    /// the model says at the version it was decided on, quiet-success is set
    /// exactly when a success would write nothing on the record the permit
    /// was decided on, and every report says whether it tripped the circuit
    /// and the state after. Each instance's host keeps its last answer that
    /// holds and, asked with `Ask::Reuse` while it still holds, answers with
    /// it without calling the component (no load, no event); after every
    /// step, every kept answer that still holds is the component's own
    /// answer, asked afresh, at that time, and one whose time is up is not.
    #[test]
    fn breakers_sharing_a_storage_agree_with_the_model(
        cfg in config(),
        start in start(),
        n in 2..=3usize,
        ops in ops(),
    ) {
        let shared = Shared::new(&cfg, n, start);
        let breakers = instances(&cfg, &shared, n);
        let mut model = Model::new(&cfg);
        let mut admitted: Vec<(Admission, Ticket)> = Vec::new();
        let mut last_generation = 0;
        // Per instance, its host's last answer that holds, and when it was
        // given, kept however stale; it may be reused only while it holds.
        let mut kept: Vec<Option<(Answered, u64)>> = vec![None; n];
        for op in &ops {
            let now = shared.now.get();
            let before = shared.stored();
            // The instance the op runs through, and the loads it should make.
            let mut loads_due: Option<(usize, usize)> = None;
            match *op {
                Op::Acquire(w, ask) => {
                    let w = w % n;
                    let reusable = match (ask, &kept[w]) {
                        (Ask::Reuse, Some((answer, _))) if holds_at(answer, before.0, now) => {
                            Some(answer.clone())
                        }
                        _ => None,
                    };
                    let got = match reusable {
                        Some(answer) => {
                            // The host answers alone: no component call, so no load.
                            loads_due = Some((w, shared.loads(w)));
                            check_reuse(&shared, &answer, now)?
                        }
                        None => {
                            loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                            acquire(&shared, &breakers[w], ask, now)
                        }
                    };
                    let want = model.acquire(now);
                    let got_answer = match &got {
                        Ok(admission) => Ok(admission.permit),
                        Err(Refusal { denial: Denial::Rejected(rejection), state, .. }) => {
                            prop_assert_eq!(*state, model.state(), "the state that refused");
                            Err(rejection.clone())
                        }
                        Err(Refusal { denial: Denial::StorageUnavailable(message), .. }) => {
                            return Err(TestCaseError::fail(format!("storage unavailable: {message}")));
                        }
                    };
                    prop_assert_eq!(permit_answer(&got_answer), ticket_answer(&want), "acquire at {}", now);
                    let (version, decided) = shared.stored();
                    let holds = model
                        .holds_until(&want, now)
                        .map(|until_ms| Holds { version, until_ms });
                    prop_assert_eq!(holds_of(&got), holds, "holds of {:?}", got);
                    if holds.is_some() {
                        kept[w] = Some((got.clone(), now));
                    }
                    if let (Ok(admission), Ok(ticket)) = (got, want) {
                        prop_assert_eq!(&admission.degraded, &None, "degraded over a working storage");
                        let quiet = machine::report(&cfg, &decided, &admission.permit, Outcome::Success, now)
                            .is_none();
                        prop_assert_eq!(
                            admission.quiet_success, quiet,
                            "quiet success of {:?}, decided on {:?}", admission, decided
                        );
                        prop_assert!(
                            !admission.quiet_success || model.success_is_idle(&ticket),
                            "a quiet success that would change something: {:?}", admission
                        );
                        admitted.push((admission, ticket));
                    }
                }
                Op::Report(pick, outcome, w) => {
                    if admitted.is_empty() {
                        continue;
                    }
                    let w = w % n;
                    let (admission, ticket) = admitted.swap_remove(pick.index(admitted.len()));
                    let permit = admission.permit;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, Some(&permit))));
                    let seen = shared.seen(w);
                    let result = breakers[w].report(&permit, outcome, now);
                    let effect = model.report(&ticket, outcome, now);
                    // A report that can never write looks at nothing: it
                    // tells the state its instance last saw.
                    let state = if machine::report_never_writes(&permit, outcome) {
                        seen
                    } else {
                        model.state()
                    };
                    prop_assert_eq!(
                        result,
                        Ok(Reported { tripped: effect.tripped, state }),
                        "report {:?} of {:?} through {}", outcome, permit, w
                    );
                    let decided_on = admission.holds.map(|h| h.version);
                    if outcome == Outcome::Success && admission.quiet_success && decided_on == Some(before.0) {
                        prop_assert_eq!(
                            shared.stored(), before.clone(),
                            "a quiet success reported on the storage it was decided on wrote"
                        );
                    }
                }
                Op::Operate(action, w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    prop_assert_eq!(operate(&shared, &breakers[w], action, now), Ok(()));
                    model.operate(action, now);
                }
                Op::Snapshot(w) => {
                    let w = w % n;
                    loads_due = Some((w, shared.loads(w) + shared.loads_due(w, op, None)));
                    let snap = breakers[w].snapshot(now);
                    prop_assert!(snap.is_ok(), "{:?}", snap);
                    let snap = snap.unwrap();
                    prop_assert_eq!(snap.version, before.0, "the version read");
                    check_snapshot(&model, &snap, now)?;
                }
                Op::Wait(wait) => shared.now.set(now + wait.ms(&cfg)),
            }
            if let Some((w, loads)) = loads_due {
                prop_assert_eq!(shared.loads(w), loads, "loads by instance {} for {:?}", w, op);
            }
            check_shared(&shared)?;
            let (version, stored) = shared.stored();
            let now = shared.now.get();
            prop_assert!(stored.generation >= last_generation, "generation went back");
            last_generation = stored.generation;
            check_record(&model, &stored, now)?;
            for (answer, decided_at) in kept.iter().flatten() {
                if holds_at(answer, version, now) {
                    check_reuse(&shared, answer, now).map(drop)?;
                } else if holds_of(answer).is_some_and(|h| h.version == version) {
                    check_lapsed(&shared, answer, *decided_at, now)?;
                }
            }
        }
    }
}

/// One step of a closed-state run: failures and ignores only, no success, no operator.
#[derive(Clone, Debug)]
enum Step {
    Acquire(usize),
    Report(Index, bool, usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..3usize).prop_map(Step::Acquire),
        2 => (any::<Index>(), prop::bool::weighted(0.8), 0..3usize)
            .prop_map(|(i, failure, w)| Step::Report(i, failure, w)),
        1 => (0..3u64).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(settings())]

    /// N failures reported through any instances count N, and the
    /// fail-max-th one opens the circuit, says so, and fires one local event
    /// from its reporter, at its time, tripped, in generation 1.
    #[test]
    fn no_failure_is_lost(
        fail_max in 1..=5u32,
        n in 2..=3usize,
        steps in vec(step(), 1..60),
    ) {
        let cfg = Config {
            fail_max,
            reset_timeout_ms: 1_000_000,
            success_threshold: 1,
            half_open_max_calls: 1,
            trial_timeout_ms: 1_000_000,
            fallback_state: State::Closed,
            ..Config::default()
        };
        let shared = Shared::new(&cfg, n, 100);
        let breakers = instances(&cfg, &shared, n);
        let mut permits: Vec<Permit> = Vec::new();
        let mut failures = 0u32;
        let mut trip: Option<(usize, u64)> = None;
        for step in &steps {
            let now = shared.now.get();
            match *step {
                Step::Acquire(w) => match breakers[w % n].acquire(now) {
                    Ok(admission) => {
                        prop_assert!(trip.is_none(), "admitted while open");
                        prop_assert_eq!((admission.permit.generation, admission.permit.trial), (0, false));
                        permits.push(admission.permit);
                    }
                    Err(Refusal { denial: Denial::Rejected(Rejection::Open(_)), state: State::Open, .. }) => {
                        prop_assert!(trip.is_some(), "rejected while closed")
                    }
                    other => prop_assert!(false, "acquire: {:?}", other),
                },
                Step::Report(pick, failure, w) => {
                    if permits.is_empty() {
                        continue;
                    }
                    let w = w % n;
                    let permit = permits.swap_remove(pick.index(permits.len()));
                    let outcome = if failure { Outcome::Failure } else { Outcome::Ignored };
                    let seen = shared.seen(w);
                    let got = breakers[w].report(&permit, outcome, now);
                    let mut tripped = false;
                    if failure && trip.is_none() {
                        failures += 1;
                        if failures == fail_max {
                            trip = Some((w, now));
                            tripped = true;
                        }
                    }
                    let state = if failure { shared.stored().1.state } else { seen };
                    prop_assert_eq!(got, Ok(Reported { tripped, state }));
                }
                Step::Wait(ms) => shared.now.set(now + ms),
            }
            check_shared(&shared)?;
            let (_, stored) = shared.stored();
            match trip {
                None => prop_assert_eq!(
                    (stored.state, stored.failures, stored.generation),
                    (State::Closed, failures, 0)
                ),
                Some((_, at)) => prop_assert_eq!(
                    (stored.state, stored.generation, stored.opened_at_ms),
                    (State::Open, 1, Some(at))
                ),
            }
        }
        let local: Vec<Heard> = shared.heard.borrow().iter().filter(|h| !h.change.remote).cloned().collect();
        let expected: Vec<Heard> = trip
            .map(|(instance, at_ms)| Heard {
                instance,
                change: Change {
                    previous: State::Closed,
                    current: State::Open,
                    at_ms,
                    generation: 1,
                    reason: Reason::Tripped,
                    remote: false,
                },
            })
            .into_iter()
            .collect();
        prop_assert_eq!(local, expected);
    }
}
