//! `machine` against the reference model: random runs agree on answers,
//! records (reasons and change times included) and trips, and every answer
//! holds exactly as long as `holds_until` says.

use proptest::collection::vec;
use proptest::prelude::*;
use tripswitch_core::config::Config;
use tripswitch_core::machine::{self, Action, Outcome, Permit, Reason, Record, Rejection, State};
use tripswitch_core::skew;

use crate::reference::{Model, Ticket, absolute, check_record, permit_answer, ticket_answer};
use crate::strategies::{
    Op, config, moment, ops, settings, shift, start, tiny, wide_config, wide_record,
};

proptest! {
    #![proptest_config(settings())]

    /// Random acquires, reports (stale permits included), operator actions
    /// and clock steps give the same answers, holds, trips and records as
    /// the model.
    #[test]
    fn machine_agrees_with_the_model(cfg in config(), start in start(), ops in ops()) {
        let mut model = Model::new(&cfg);
        let mut rec = Record::default();
        let mut now = start;
        let mut permits: Vec<(Permit, Ticket)> = Vec::new();
        for op in &ops {
            let before = rec.clone();
            match *op {
                Op::Acquire(..) => {
                    let (write, got) = machine::acquire(&cfg, &rec, now);
                    let want = model.acquire(now);
                    prop_assert_eq!(permit_answer(&got), ticket_answer(&want), "acquire at {}", now);
                    prop_assert_eq!(
                        write.is_some(),
                        got.as_ref().is_ok_and(|p| p.trial),
                        "acquire writes exactly when it grants a trial"
                    );
                    prop_assert_eq!(
                        machine::holds_until(&got, now),
                        model.holds_until(&want, now),
                        "how long {:?} on {:?} holds", got, before
                    );
                    if let Some(next) = write {
                        rec = next;
                    }
                    if let (Ok(permit), Ok(ticket)) = (got, want) {
                        permits.push((permit, ticket));
                    }
                }
                Op::Report(pick, outcome, _) => {
                    if permits.is_empty() {
                        continue;
                    }
                    let (permit, ticket) = permits.swap_remove(pick.index(permits.len()));
                    let write = machine::report(&cfg, &rec, &permit, outcome, now);
                    let effect = model.report(&ticket, outcome, now);
                    prop_assert_eq!(
                        write.is_some(), effect.changed,
                        "report {:?} of {:?} at {}: write {:?}", outcome, permit, now, write
                    );
                    prop_assert_eq!(
                        write.as_ref().is_some_and(|next| machine::tripped(&rec, next)),
                        effect.tripped,
                        "report {:?} of {:?} on {:?} tripped: write {:?}", outcome, permit, rec, write
                    );
                    let never = machine::report_never_writes(&permit, outcome);
                    prop_assert_eq!(
                        never, !permit.trial && outcome == Outcome::Ignored,
                        "never-writes is exactly a non-trial ignored"
                    );
                    prop_assert!(!never || write.is_none(), "a never-writing report wrote");
                    if let Some(next) = write {
                        rec = next;
                    }
                }
                Op::Operate(action, _) => {
                    rec = machine::operate(&cfg, &rec, action, now);
                    model.operate(action, now);
                }
                Op::Snapshot(_) => {}
                Op::Wait(wait) => now += wait.ms(&cfg),
            }
            let bump = rec.state != before.state || matches!(op, Op::Operate(..));
            prop_assert_eq!(
                rec.generation,
                before.generation + u64::from(bump),
                "the generation moves by one on a state change or an operator action, \
                 never otherwise: {:?} -> {:?} by {:?}", before, rec, op
            );
            if !bump {
                prop_assert_eq!(
                    (rec.reason, rec.changed_at_ms),
                    (before.reason, before.changed_at_ms),
                    "reason and change time stay without a change: {:?} -> {:?} by {:?}",
                    before, rec, op
                );
            }
            check_record(&model, &rec, now)?;
        }
    }
}

// ---------------------------------------------------------------------------
// How long an answer holds: what lets a host reuse it.

/// The times to ask at besides `t0`'s shifts: the extremes, and the edges
/// where the record's own times matter (opened-at + reset timeout, each
/// trial + trial timeout, each -1, exactly, +1).
fn edges(cfg: &Config, rec: &Record, t0: u64) -> Vec<u64> {
    let mut at = vec![0, 1, t0, u64::MAX - 1, u64::MAX];
    let mut around = |edge: u64| {
        at.extend([edge.saturating_sub(1), edge, edge.saturating_add(1)]);
    };
    if let Some(opened) = rec.opened_at_ms {
        around(opened.saturating_add(cfg.reset_timeout_ms));
    }
    for &trial in &rec.trials {
        around(trial.saturating_add(cfg.trial_timeout_ms));
    }
    at
}

/// `answer`, given at `from`, as it reads at `to` while it holds: an
/// admission issued then, a rejection with the ms left then.
fn reissued(answer: &Result<Permit, Rejection>, from: u64, to: u64) -> Result<Permit, Rejection> {
    match answer {
        Ok(permit) => Ok(Permit {
            issued_at_ms: to,
            ..*permit
        }),
        Err(Rejection::Open(ms)) => Err(Rejection::Open(from + ms - to)),
        Err(Rejection::HalfOpenFull(ms)) => Err(Rejection::HalfOpenFull(from + ms - to)),
        Err(Rejection::ForcedOpen) => Err(Rejection::ForcedOpen),
    }
}

proptest! {
    #![proptest_config(settings())]

    /// The claim behind `holds`: whenever `holds_until` says acquire's
    /// answer at t holds until u (none: no bound), acquire on the same record
    /// at any time in [t, u) (with no bound: at any time at all, earlier
    /// included), near or far, u64 extremes included, writes nothing and
    /// gives the same answer, only issued then (a rejection's ms counting
    /// down to u); and at u it gives another answer, so the bound is tight.
    /// By kind: a trial holds nothing; a non-trial admission, which acquire
    /// gives only on a closed or disabled record, and a forced-open refusal
    /// hold without bound; an open refusal holds until a trial is admitted,
    /// a full half-open one until the oldest trial is forfeited.
    #[test]
    fn a_held_answer_is_the_answer_until_it_ends(
        cfg in wide_config(),
        rec in wide_record(),
        t0 in moment(),
        shifts in vec(shift(), 1..24),
        others in vec((any::<bool>(), prop::option::of(prop_oneof![0..6u64, any::<u64>()]), moment()), 0..6),
    ) {
        let mut times: Vec<u64> = shifts
            .iter()
            .map(|&(later, d)| if later { t0.saturating_add(d) } else { t0.saturating_sub(d) })
            .collect();
        times.extend(edges(&cfg, &rec, t0));
        let alike = matches!(rec.state, State::Closed | State::Disabled);

        for &t in &times {
            let (write, answer) = machine::acquire(&cfg, &rec, t);
            let holds = machine::holds_until(&answer, t);
            let ahead = rec.state == State::Open
                && rec.opened_at_ms.is_some_and(|o| o > t.saturating_add(skew::OPENED_AHEAD_MS));
            if ahead {
                // Stamped by a clock ahead of t: the open restarts from t, for
                // the duration its writer gave it, in a write.
                let restarted = write.as_ref().map(|r| (r.state, r.opened_at_ms));
                prop_assert_eq!(restarted, Some((State::Open, Some(t))), "on {:?} at {}", rec, t);
                prop_assert!(matches!(answer, Err(Rejection::Open(_))), "{:?}", answer);
                continue;
            }
            match &answer {
                Ok(permit) if permit.trial => prop_assert_eq!(holds, None, "a trial on {:?}", rec),
                Ok(permit) => {
                    prop_assert!(alike, "a non-trial {:?} on {:?}", permit, rec);
                    prop_assert_eq!(holds, Some(None), "{:?} on {:?}", permit, rec);
                }
                Err(Rejection::ForcedOpen) => prop_assert_eq!(holds, Some(None), "forced open"),
                Err(Rejection::Open(ms)) => {
                    let ready_at = rec.opened_at_ms.unwrap_or(0).saturating_add(cfg.reset_timeout_ms);
                    prop_assert_eq!(*ms, ready_at - t, "open on {:?} at {}", rec, t);
                    prop_assert_eq!(holds, Some(Some(ready_at)), "until a trial is admitted");
                }
                Err(Rejection::HalfOpenFull(ms)) => {
                    let oldest = rec.trials.iter().copied()
                        .filter(|&issued| !skew::trial_expired(issued, t, cfg.trial_timeout_ms))
                        .min();
                    let free_at = oldest.map(|o| o.saturating_add(cfg.trial_timeout_ms));
                    prop_assert_eq!(Some(t + ms), free_at, "full on {:?} at {}", rec, t);
                    prop_assert_eq!(holds, Some(free_at), "until the oldest trial is forfeited");
                }
            }
            let Some(until) = holds else { continue };
            prop_assert_eq!(&write, &None, "a held answer wrote");
            for &u in &times {
                if until.is_some_and(|end| u < t || u >= end) {
                    continue;
                }
                prop_assert_eq!(
                    machine::acquire(&cfg, &rec, u),
                    (None, reissued(&answer, t, u)),
                    "answered {:?} at {} on {:?}, holding until {:?}; then at {}",
                    answer, t, rec, until, u
                );
            }
            if let Some(end) = until {
                let (_, then) = machine::acquire(&cfg, &rec, end);
                prop_assert_ne!(
                    absolute(&then, end), absolute(&answer, t),
                    "answered {:?} at {} on {:?}, holding until {}, and still at {}: {:?}",
                    answer, t, rec, end, end, then
                );
            }
        }

        // For permits acquire never gave, any trial, any generation: only a
        // trial holds nothing.
        for &(trial, generation, issued_at_ms) in &others {
            let permit = Permit {
                generation: generation.unwrap_or(rec.generation),
                trial,
                issued_at_ms,
            };
            let holds = machine::holds_until(&Ok(permit), issued_at_ms);
            prop_assert_eq!(holds, (!trial).then_some(None), "{:?}", permit);
        }
    }
}

// ---------------------------------------------------------------------------
// Regressions and examples.

/// Once a bug: an operator's half-open while half-open cleared the trials but
/// kept the generation, so a trial permit issued before it still matched a
/// new trial issued in the same ms, took its slot and closed the circuit. Now
/// every operator action starts a new generation, and the old trial counts
/// nothing while the new one still does.
#[test]
fn an_operators_half_open_voids_the_trials_before_it() {
    let cfg = tiny();
    let open = machine::operate(&cfg, &Record::default(), Action::Open, 0);
    let (Some(half_open), Ok(voided)) = machine::acquire(&cfg, &open, 1) else {
        panic!("the reset timeout elapsed: a trial is due");
    };
    let reset = machine::operate(&cfg, &half_open, Action::HalfOpen, 1);
    assert_eq!(reset.state, half_open.state);
    assert_eq!(
        reset.generation,
        voided.generation + 1,
        "an operator action starts a new generation even in the same state"
    );
    let (Some(with_new_trial), Ok(new)) = machine::acquire(&cfg, &reset, 1) else {
        panic!("the operator freed every slot");
    };
    assert_eq!(new.issued_at_ms, voided.issued_at_ms, "the same slot name");
    let write = machine::report(&cfg, &with_new_trial, &voided, Outcome::Success, 1);
    assert_eq!(
        write, None,
        "the operator's half-open voided this trial; its report counts nothing"
    );
    let closed = machine::report(&cfg, &with_new_trial, &new, Outcome::Success, 1);
    assert_eq!(
        closed.map(|r| r.state),
        Some(State::Closed),
        "the new trial counts"
    );
}

/// Each transition notes its reason and its time; a write that changes no
/// state keeps both; every operator action notes itself, even in the same
/// state. Only a trip and a failed trial are `tripped`.
#[test]
fn every_transition_notes_its_reason_and_time() {
    let cfg = Config {
        fail_max: 2,
        reset_timeout_ms: 10,
        success_threshold: 1,
        half_open_max_calls: 1,
        trial_timeout_ms: 10,
        fallback_state: State::Closed,
        ..Config::default()
    };
    let noted = |r: &Record| (r.state, r.reason, r.changed_at_ms, r.generation);
    let fresh = Record::default();
    assert_eq!(noted(&fresh), (State::Closed, Reason::Recovered, 0, 0));

    let permit = machine::acquire(&cfg, &fresh, 1).1.unwrap();
    let counted = machine::report(&cfg, &fresh, &permit, Outcome::Failure, 2).unwrap();
    assert_eq!(noted(&counted), noted(&fresh), "a count is no transition");
    assert!(!machine::tripped(&fresh, &counted));

    let open = machine::report(&cfg, &counted, &permit, Outcome::Failure, 3).unwrap();
    assert_eq!(noted(&open), (State::Open, Reason::Tripped, 3, 1));
    assert!(machine::tripped(&counted, &open), "a trip");

    let (Some(half_open), Ok(trial)) = machine::acquire(&cfg, &open, 13) else {
        panic!("the reset timeout elapsed");
    };
    assert_eq!(
        noted(&half_open),
        (State::HalfOpen, Reason::TimeoutElapsed, 13, 2)
    );
    let reopened = machine::report(&cfg, &half_open, &trial, Outcome::Failure, 14).unwrap();
    assert_eq!(noted(&reopened), (State::Open, Reason::TrialFailed, 14, 3));
    assert!(machine::tripped(&half_open, &reopened), "a failed trial");

    let (Some(half_open), Ok(trial)) = machine::acquire(&cfg, &reopened, 24) else {
        panic!("the reset timeout elapsed");
    };
    let ignored = machine::report(&cfg, &half_open, &trial, Outcome::Ignored, 25).unwrap();
    assert_eq!(noted(&ignored), noted(&half_open), "a freed slot");
    assert!(!machine::tripped(&half_open, &ignored));
    let (Some(half_open), Ok(trial)) = machine::acquire(&cfg, &ignored, 26) else {
        panic!("the slot is free");
    };
    let recovered = machine::report(&cfg, &half_open, &trial, Outcome::Success, 27).unwrap();
    assert_eq!(noted(&recovered), (State::Closed, Reason::Recovered, 27, 5));
    assert!(!machine::tripped(&half_open, &recovered));

    let closed_again = machine::operate(&cfg, &recovered, Action::Close, 30);
    assert_eq!(
        noted(&closed_again),
        (State::Closed, Reason::Operator, 30, 6),
        "an operator action in the same state notes itself too"
    );
    for (action, state) in [
        (Action::Open, State::Open),
        (Action::HalfOpen, State::HalfOpen),
        (Action::ForceOpen, State::ForcedOpen),
        (Action::Disable, State::Disabled),
    ] {
        let operated = machine::operate(&cfg, &recovered, action, 31);
        assert_eq!(noted(&operated), (state, Reason::Operator, 31, 6));
    }
}
