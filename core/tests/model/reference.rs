//! The reference model, written from the rules in machine.rs's module doc,
//! and the checks of records, snapshots and answers against it.

use proptest::prelude::*;
use tripswitch_core::config::Config;
use tripswitch_core::machine::{
    self, Action, Outcome, Permit, Reason, Record, Rejection, Snapshot, State,
};

/// A half-open trial slot: the permit holding it and when that permit was issued.
#[derive(Clone, Debug)]
pub struct Slot {
    holder: u64,
    issued: u64,
}

#[derive(Clone, Debug)]
pub enum Phase {
    Closed { failures: u32 },
    Open { since: u64 },
    HalfOpen { successes: u32, slots: Vec<Slot> },
    ForcedOpen,
    Disabled,
}

/// A permit as the model issued it; `id` tells any two permits apart.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    id: u64,
    pub generation: u64,
    pub trial: bool,
    pub issued: u64,
}

/// What a report did to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    /// Anything changed.
    pub changed: bool,
    /// The report opened the circuit: a trip from closed, or a failed trial.
    pub tripped: bool,
}

#[derive(Debug)]
pub struct Model {
    pub cfg: Config,
    pub phase: Phase,
    pub generation: u64,
    /// Why the state last changed, and when (an operator action counts as a change).
    pub reason: Reason,
    pub changed_at: u64,
    tickets: u64,
}

impl Model {
    pub fn new(cfg: &Config) -> Model {
        Model {
            cfg: cfg.clone(),
            phase: Phase::Closed { failures: 0 },
            generation: 0,
            reason: Reason::Recovered,
            changed_at: 0,
            tickets: 0,
        }
    }

    pub fn state(&self) -> State {
        match self.phase {
            Phase::Closed { .. } => State::Closed,
            Phase::Open { .. } => State::Open,
            Phase::HalfOpen { .. } => State::HalfOpen,
            Phase::ForcedOpen => State::ForcedOpen,
            Phase::Disabled => State::Disabled,
        }
    }

    /// Moves to `phase`; a change of state starts a new generation and
    /// notes why and when.
    fn enter(&mut self, phase: Phase, reason: Reason, now: u64) {
        let before = self.state();
        self.phase = phase;
        if self.state() != before {
            self.generation += 1;
            self.reason = reason;
            self.changed_at = now;
        }
    }

    fn live(&self, slot: &Slot, now: u64) -> bool {
        now < slot.issued + self.cfg.trial_timeout_ms
    }

    /// Issue times of the trials in flight at `now`, oldest first.
    pub fn live_trials(&self, now: u64) -> Vec<u64> {
        let Phase::HalfOpen { slots, .. } = &self.phase else {
            return Vec::new();
        };
        let mut live: Vec<u64> = slots
            .iter()
            .filter(|s| self.live(s, now))
            .map(|s| s.issued)
            .collect();
        live.sort_unstable();
        live
    }

    fn ticket(&mut self, trial: bool, now: u64) -> Ticket {
        self.tickets += 1;
        Ticket {
            id: self.tickets,
            generation: self.generation,
            trial,
            issued: now,
        }
    }

    fn take_slot(&mut self, now: u64) -> Result<Ticket, Rejection> {
        let ticket = self.ticket(true, now);
        if let Phase::HalfOpen { slots, .. } = &mut self.phase {
            slots.push(Slot {
                holder: ticket.id,
                issued: now,
            });
        }
        Ok(ticket)
    }

    pub fn acquire(&mut self, now: u64) -> Result<Ticket, Rejection> {
        let ready_at = |since: u64| since + self.cfg.reset_timeout_ms;
        match self.phase {
            Phase::Closed { .. } | Phase::Disabled => Ok(self.ticket(false, now)),
            Phase::ForcedOpen => Err(Rejection::ForcedOpen),
            Phase::Open { since } if now < ready_at(since) => {
                Err(Rejection::Open(ready_at(since) - now))
            }
            Phase::Open { .. } => {
                self.enter(
                    Phase::HalfOpen {
                        successes: 0,
                        slots: Vec::new(),
                    },
                    Reason::TimeoutElapsed,
                    now,
                );
                self.take_slot(now)
            }
            Phase::HalfOpen { .. } => {
                let live = self.live_trials(now);
                if live.len() >= self.cfg.half_open_max_calls as usize {
                    Err(Rejection::HalfOpenFull(
                        live[0] + self.cfg.trial_timeout_ms - now,
                    ))
                } else {
                    self.take_slot(now)
                }
            }
        }
    }

    /// Until when the answer `acquire` just gave at `now` stays its answer
    /// while nothing is written (inner none: no time bound); none for an
    /// answer that must be asked again (a trial, which took a slot). An open
    /// refusal holds until a trial is admitted, a full half-open one until
    /// the oldest trial is forfeited.
    pub fn holds_until(&self, answer: &Result<Ticket, Rejection>, now: u64) -> Option<Option<u64>> {
        match (answer, &self.phase) {
            (Ok(ticket), _) if ticket.trial => None,
            (Ok(_), _) => self.answers_alike_at_any_time().then_some(None),
            (Err(Rejection::ForcedOpen), _) => Some(None),
            (Err(Rejection::Open(_)), Phase::Open { since }) => {
                Some(Some(since + self.cfg.reset_timeout_ms))
            }
            (Err(Rejection::HalfOpenFull(_)), Phase::HalfOpen { .. }) => {
                let oldest = self.live_trials(now)[0];
                Some(Some(oldest + self.cfg.trial_timeout_ms))
            }
            (Err(rejection), phase) => {
                panic!("the model never rejects with {rejection:?} in {phase:?}")
            }
        }
    }

    /// Counts what became of a call.
    pub fn report(&mut self, ticket: &Ticket, outcome: Outcome, now: u64) -> Effect {
        let nothing = Effect {
            changed: false,
            tripped: false,
        };
        if ticket.generation != self.generation {
            return nothing;
        }
        let cfg = self.cfg.clone();
        let mut tripped = false;
        match (&mut self.phase, ticket.trial) {
            (Phase::Closed { failures }, false) => match outcome {
                Outcome::Success if *failures > 0 => *failures = 0,
                Outcome::Failure if *failures + 1 >= cfg.fail_max => {
                    tripped = true;
                    self.enter(Phase::Open { since: now }, Reason::Tripped, now)
                }
                Outcome::Failure => *failures += 1,
                Outcome::Success | Outcome::Ignored => return nothing,
            },
            (Phase::HalfOpen { successes, slots }, true) => {
                let Some(at) = slots
                    .iter()
                    .position(|s| s.holder == ticket.id && now < s.issued + cfg.trial_timeout_ms)
                else {
                    return nothing;
                };
                slots.remove(at);
                match outcome {
                    Outcome::Ignored => {}
                    Outcome::Failure => {
                        tripped = true;
                        self.enter(Phase::Open { since: now }, Reason::TrialFailed, now)
                    }
                    Outcome::Success if *successes + 1 >= cfg.success_threshold => {
                        self.enter(Phase::Closed { failures: 0 }, Reason::Recovered, now)
                    }
                    Outcome::Success => *successes += 1,
                }
            }
            _ => return nothing,
        }
        Effect {
            changed: true,
            tripped,
        }
    }

    /// Whether reporting a success for `ticket` now would change nothing.
    pub fn success_is_idle(&self, ticket: &Ticket) -> bool {
        ticket.generation != self.generation
            || match self.phase {
                Phase::Closed { failures } => !ticket.trial && failures == 0,
                Phase::Disabled | Phase::Open { .. } | Phase::ForcedOpen => true,
                Phase::HalfOpen { .. } => !ticket.trial,
            }
    }

    /// Whether acquire answers alike whenever it is asked, as long as nothing
    /// changes: a non-trial permit of this generation (closed or disabled).
    pub fn answers_alike_at_any_time(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. } | Phase::Disabled)
    }

    /// An operator action sets the phase and always starts a new generation
    /// (once, even when the state changes too), voiding every permit before
    /// it; it is noted as the operator's, now.
    pub fn operate(&mut self, action: Action, now: u64) {
        self.phase = match action {
            Action::Open => Phase::Open { since: now },
            Action::Close => Phase::Closed { failures: 0 },
            Action::HalfOpen => Phase::HalfOpen {
                successes: 0,
                slots: Vec::new(),
            },
            Action::ForceOpen => Phase::ForcedOpen,
            Action::Disable => Phase::Disabled,
        };
        self.generation += 1;
        self.reason = Reason::Operator;
        self.changed_at = now;
    }

    /// What a snapshot at `now` says: effective state, retry-after, trials in flight.
    pub fn view(&self, now: u64) -> (State, Option<u64>, u32) {
        let max = self.cfg.half_open_max_calls as usize;
        match self.phase {
            Phase::Open { since } if now >= since + self.cfg.reset_timeout_ms => {
                (State::HalfOpen, None, 0)
            }
            Phase::Open { since } => (
                State::Open,
                Some(since + self.cfg.reset_timeout_ms - now),
                0,
            ),
            Phase::HalfOpen { .. } => {
                let live = self.live_trials(now);
                let retry = (live.len() >= max).then(|| live[0] + self.cfg.trial_timeout_ms - now);
                (State::HalfOpen, retry, live.len() as u32)
            }
            _ => (self.state(), None, 0),
        }
    }
}

// ---------------------------------------------------------------------------
// Comparing the implementation with the model.

pub type Answer = Result<(u64, bool, u64), Rejection>;

pub fn permit_answer(answer: &Result<Permit, Rejection>) -> Answer {
    answer
        .as_ref()
        .map(|p| (p.generation, p.trial, p.issued_at_ms))
        .map_err(Clone::clone)
}

pub fn ticket_answer(answer: &Result<Ticket, Rejection>) -> Answer {
    answer
        .as_ref()
        .map(|t| (t.generation, t.trial, t.issued))
        .map_err(Clone::clone)
}

/// An acquire's answer with its times made absolute, so that answers given
/// at different times compare: an admission without its issue time, a
/// rejection with the instant it names instead of the ms left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absolute {
    Admitted { generation: u64, trial: bool },
    OpenUntil(u64),
    FullUntil(u64),
    ForcedOpen,
}

pub fn absolute(answer: &Result<Permit, Rejection>, now: u64) -> Absolute {
    match answer {
        Ok(p) => Absolute::Admitted {
            generation: p.generation,
            trial: p.trial,
        },
        Err(Rejection::Open(ms)) => Absolute::OpenUntil(now.saturating_add(*ms)),
        Err(Rejection::HalfOpenFull(ms)) => Absolute::FullUntil(now.saturating_add(*ms)),
        Err(Rejection::ForcedOpen) => Absolute::ForcedOpen,
    }
}

/// A snapshot as `Breaker::snapshot` gives it: the machine's, at the
/// stored version it read (0: absent).
pub fn stored_snapshot(cfg: &Config, rec: &Record, now: u64, version: u64) -> Snapshot {
    Snapshot {
        version,
        ..machine::snapshot(cfg, rec, now)
    }
}

/// The stored record says what the model says.
pub fn check_record(model: &Model, rec: &Record, now: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(rec.state, model.state(), "state; record {:?}", rec);
    prop_assert_eq!(
        rec.generation,
        model.generation,
        "generation; record {:?}",
        rec
    );
    prop_assert_eq!(rec.reason, model.reason, "reason; record {:?}", rec);
    prop_assert_eq!(
        rec.changed_at_ms,
        model.changed_at,
        "changed-at; record {:?}",
        rec
    );
    match &model.phase {
        Phase::Closed { failures } => prop_assert_eq!(rec.failures, *failures, "failures"),
        Phase::Open { since } => prop_assert_eq!(rec.opened_at_ms, Some(*since), "opened-at"),
        Phase::HalfOpen { successes, .. } => {
            prop_assert_eq!(rec.successes, *successes, "successes");
            let mut live: Vec<u64> = rec
                .trials
                .iter()
                .copied()
                .filter(|&t| now < t + model.cfg.trial_timeout_ms)
                .collect();
            live.sort_unstable();
            prop_assert_eq!(
                live,
                model.live_trials(now),
                "live trials; record {:?}",
                rec
            );
        }
        Phase::ForcedOpen | Phase::Disabled => {}
    }
    check_snapshot(model, &machine::snapshot(&model.cfg, rec, now), now)
}

/// A snapshot says what the model says.
pub fn check_snapshot(model: &Model, snap: &Snapshot, now: u64) -> Result<(), TestCaseError> {
    let (state, retry_after, in_flight) = model.view(now);
    prop_assert_eq!(snap.state, state, "effective state; {:?}", snap);
    prop_assert_eq!(snap.retry_after_ms, retry_after, "retry-after; {:?}", snap);
    prop_assert_eq!(
        snap.trials_in_flight,
        in_flight,
        "trials in flight; {:?}",
        snap
    );
    prop_assert_eq!(snap.generation, model.generation, "snapshot generation");
    match &model.phase {
        Phase::Closed { failures } => prop_assert_eq!(snap.failures, *failures),
        Phase::HalfOpen { successes, .. } => prop_assert_eq!(snap.successes, *successes),
        Phase::Open { .. } if state == State::HalfOpen => prop_assert_eq!(snap.successes, 0),
        _ => {}
    }
    Ok(())
}
