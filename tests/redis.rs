//! Redis storage against real `redis-server` processes that the tests start
//! on free loopback ports: the storage contract, round trips per call,
//! faults, pybreaker's Redis behaviours, and a three-master cluster.

use std::time::Duration;

use tripswitch::{CallError, Entry, Error, RedisStorage, Rejected, State, Storage, SwapResult};
use tripswitch_tests::{
    Heard, Recorder, RedisCluster, RedisServer, Swallow, advance, builder, clock, fail, succeed,
};

fn storage(server: &RedisServer, namespace: &str) -> RedisStorage {
    RedisStorage::builder(server.url())
        .namespace(namespace)
        .retry_interval(Duration::ZERO)
        .build()
        .unwrap()
}

#[test]
fn the_storage_contract_holds() {
    let server = RedisServer::start();
    let a = storage(&server, "a");
    assert_eq!(a.load("db"), Ok(None));
    assert_eq!(
        a.compare_and_swap("db", Some(1), b"x"),
        Ok(SwapResult::Conflict(None))
    );
    let Ok(SwapResult::Written(first)) = a.compare_and_swap("db", None, b"x") else {
        panic!("the first write goes through");
    };
    let current = Entry {
        version: first,
        data: b"x".to_vec(),
    };
    assert_eq!(
        a.compare_and_swap("db", None, b"y"),
        Ok(SwapResult::Conflict(Some(current.clone())))
    );
    assert_eq!(
        a.compare_and_swap("db", Some(first + 9), b"y"),
        Ok(SwapResult::Conflict(Some(current)))
    );
    let Ok(SwapResult::Written(second)) = a.compare_and_swap("db", Some(first), b"\x00\xffy")
    else {
        panic!("a write at the current version goes through");
    };
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        a.load("db"),
        Ok(Some(Entry {
            version: second,
            data: b"\x00\xffy".to_vec()
        }))
    );
    // A key created again never hands out a version it had before.
    server.cli(&["DEL", "{a:tripswitch:db}"]);
    let Ok(SwapResult::Written(again)) = a.compare_and_swap("db", None, b"z") else {
        panic!("writing a deleted key goes through");
    };
    assert!(again > second, "{again} after {second}");
    assert!(matches!(
        a.compare_and_swap("db", Some(second), b"old"),
        Ok(SwapResult::Conflict(Some(Entry { version, .. }))) if version == again
    ));

    // Namespaces keep breakers of one name apart, and so does no namespace.
    let b = storage(&server, "b");
    let bare = storage(&server, "");
    assert_eq!(b.load("db"), Ok(None));
    assert_eq!(bare.load("db"), Ok(None));
    assert!(matches!(
        b.compare_and_swap("db", None, b"b"),
        Ok(SwapResult::Written(_))
    ));
    assert_eq!(a.load("db").unwrap().unwrap().data, b"z");
    assert_eq!(a.key("db"), "{a:tripswitch:db}");
    assert_eq!(bare.key("db"), "{tripswitch:db}");
    let mut keys: Vec<String> = server
        .cli(&["KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["{a:tripswitch:db}", "{b:tripswitch:db}"]);
    assert_eq!(a.breakers().unwrap(), vec!["db".to_string()]);
}

#[test]
fn values_that_are_not_ours_give_clear_errors() {
    let server = RedisServer::start();
    let redis = storage(&server, "odd");
    let clock = clock();
    let make = |name: &str| {
        builder(name, &clock)
            .storage(redis.clone())
            .build()
            .unwrap()
    };
    let expect_error = |name: &str, needle: &str| match make(name).snapshot() {
        Err(Error::Storage { message, .. } | Error::Corrupt(message)) => {
            assert!(message.contains(needle), "{name}: {message}")
        }
        other => panic!("{name}: expected a storage error, got {other:?}"),
    };
    server.cli(&["RPUSH", "{odd:tripswitch:listy}", "a", "b"]);
    expect_error(
        "listy",
        "holds another type of value, not a tripswitch record",
    );
    server.cli(&["HSET", "{odd:tripswitch:truncated}", "v", "3", "d", "\x01"]);
    expect_error("truncated", "stored record is corrupt: truncated record");
    server.cli(&["HSET", "{odd:tripswitch:words}", "v", "three", "d", "x"]);
    expect_error("words", "its version is not a number");
    server.cli(&["HSET", "{odd:tripswitch:half}", "d", "x"]);
    expect_error("half", "a hash without both v and d");
    // An operator action repairs a corrupt record.
    let truncated = make("truncated");
    truncated.close().unwrap();
    assert_eq!(truncated.state().unwrap(), State::Closed);
}

/// Counts the commands clients sent Redis for `work`.
fn commands(server: &RedisServer, work: impl FnOnce()) -> Vec<(String, u64)> {
    server.reset_stats();
    work();
    server.client_command_counts().into_iter().collect()
}

fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter()
        .map(|(name, n)| (name.to_string(), *n))
        .collect()
}

#[test]
fn each_call_costs_its_round_trip_budget() {
    let server = RedisServer::start();
    let redis = storage(&server, "budget");
    let clock = clock();
    let breaker = builder("budget", &clock)
        .fail_max(2)
        .reset_timeout(Duration::from_millis(100))
        .storage(redis.clone())
        .build()
        .unwrap();
    // Warm up: the first compare-and-swap also loads the script.
    fail(&breaker).unwrap_err();
    succeed(&breaker).unwrap();

    assert_eq!(
        commands(&server, || succeed(&breaker).unwrap()),
        pairs(&[("hmget", 1)]),
        "success"
    );
    assert_eq!(
        commands(&server, || drop(fail(&breaker))),
        pairs(&[("evalsha", 1), ("hmget", 1)]),
        "failure"
    );
    assert_eq!(
        commands(&server, || assert!(matches!(
            fail(&breaker),
            Err(CallError::Failed { tripped: true, .. })
        ))),
        pairs(&[("evalsha", 1), ("hmget", 1)]),
        "trip"
    );
    assert_eq!(
        commands(&server, || assert!(
            fail(&breaker).unwrap_err().is_rejected()
        )),
        pairs(&[("hmget", 1)]),
        "rejection"
    );
    advance(&clock, 100);
    assert_eq!(
        commands(&server, || succeed(&breaker).unwrap()),
        pairs(&[("evalsha", 2), ("hmget", 1)]),
        "trial: load, take the slot, close"
    );
    assert_eq!(breaker.state().unwrap(), State::Closed);
}

#[test]
fn a_flushed_script_is_loaded_again() {
    let server = RedisServer::start();
    let redis = storage(&server, "noscript");
    let clock = clock();
    let breaker = builder("noscript", &clock)
        .fail_max(3)
        .storage(redis)
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    server.cli(&["SCRIPT", "FLUSH"]);
    let sent = commands(&server, || drop(fail(&breaker)));
    assert_eq!(
        sent,
        pairs(&[("evalsha", 2), ("hmget", 1), ("script|load", 1)]),
        "NOSCRIPT, then SCRIPT LOAD and EVALSHA again"
    );
    assert_eq!(breaker.snapshot().unwrap().failures, 2);
}

#[test]
fn a_dead_redis_means_the_fallback_state_and_a_live_one_resumes() {
    let mut server = RedisServer::start();
    let redis = storage(&server, "faults");
    let clock = clock();
    let heard = Recorder::default();
    let admits = builder("admits", &clock)
        .fail_max(2)
        .storage(redis.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    let rejects = builder("rejects", &clock)
        .fail_max(2)
        .fallback_state(State::Open)
        .storage(redis.clone())
        .build()
        .unwrap();
    fail(&admits).unwrap_err();
    fail(&rejects).unwrap_err();

    server.stop();
    for _ in 0..20 {
        assert_eq!(admits.call(|| Ok::<_, ()>(1)).unwrap(), 1);
        match rejects.call(|| Ok::<_, ()>(1)) {
            Err(CallError::Rejected(Rejected::StorageUnavailable { message, .. })) => {
                assert!(message.contains("Redis redis://127.0.0.1"), "{message}")
            }
            other => panic!("expected storage-unavailable, got {other:?}"),
        }
    }
    let told = heard
        .take()
        .into_iter()
        .filter(|h| matches!(h, Heard::Error(_)))
        .count();
    assert_eq!(told, 1, "an outage is told once, not once per call");

    server.resume();
    // The stored counts survived; the breakers go on from them.
    assert_eq!(admits.snapshot().unwrap().failures, 1);
    assert!(matches!(
        fail(&rejects),
        Err(CallError::Failed { tripped: true, .. })
    ));
    assert_eq!(rejects.state().unwrap(), State::Open);
}

#[test]
fn a_frozen_redis_costs_a_timeout_not_a_hang() {
    let server = RedisServer::start();
    let redis = RedisStorage::builder(server.url())
        .namespace("frozen")
        .response_timeout(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(50))
        .retry_interval(Duration::ZERO)
        .fallback_circuit_state(State::Open)
        .build()
        .unwrap();
    let clock = clock();
    let breaker = builder("frozen", &clock).storage(redis).build().unwrap();
    succeed(&breaker).unwrap();
    server.freeze();
    for _ in 0..3 {
        assert!(matches!(
            breaker.acquire(),
            Err(Error::Rejected(Rejected::StorageUnavailable { .. }))
        ));
    }
    server.thaw();
    succeed(&breaker).unwrap();
}

/// A storage through `relay`, whose replies time out in 200 ms.
fn relayed(relay: &Swallow, namespace: &str) -> RedisStorage {
    RedisStorage::builder(relay.url())
        .namespace(namespace)
        .response_timeout(Duration::from_millis(200))
        .retry_interval(Duration::ZERO)
        .build()
        .unwrap()
}

#[test]
fn a_write_whose_reply_is_lost_counts_its_outcomes_once() {
    let server = RedisServer::start();
    let relay = Swallow::to(server.port);
    let clock = clock();
    let windowed = |storage: RedisStorage| {
        builder("lost", &clock)
            .storage(storage)
            .failure_rate_threshold(50)
            .minimum_calls(100)
            .window_calls(100)
            .fail_max(1000)
            .flush_interval(Duration::from_secs(60))
    };
    let breaker = windowed(relayed(&relay, "lost")).build().unwrap();
    // A failure is written at once (with fail-max, the consecutive rule is
    // on), which loads the script into Redis; so is the success that resets
    // the count. The next four are held.
    assert!(fail(&breaker).is_err());
    for _ in 0..5 {
        succeed(&breaker).unwrap();
    }
    // Redis applies the merge of the four held outcomes; its reply is lost.
    relay.swallow_after(Some(b"EVALSHA"));
    assert!(
        matches!(breaker.flush(), Err(Error::Storage { .. })),
        "the reply timed out"
    );
    assert!(relay.swallowed() > 0, "Redis answered the write");
    relay.swallow_after(None);
    // The next look finds the write landed: the four are not merged again.
    succeed(&breaker).unwrap();
    breaker.flush().unwrap();
    let direct = windowed(storage(&server, "lost")).build().unwrap();
    let snapshot = direct.snapshot().unwrap();
    assert_eq!(snapshot.window.calls, 7, "{snapshot:?}");
}

#[test]
fn a_trial_slot_whose_reply_is_lost_is_forfeited_by_its_timeout() {
    let server = RedisServer::start();
    let relay = Swallow::to(server.port);
    let clock = clock();
    let redis = relayed(&relay, "lost-trial");
    let breaker = builder("lost-trial", &clock)
        .storage(redis)
        .fail_max(1)
        .reset_timeout(Duration::from_millis(100))
        .trial_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    assert!(fail(&breaker).is_err(), "it trips");
    advance(&clock, 100);
    // The read passes; Redis takes the trial slot, and the reply to that
    // write is lost, so the caller gets the fallback's degraded admission.
    relay.swallow_after(Some(b"EVALSHA"));
    let permit = breaker.acquire().unwrap();
    assert!(
        !permit.is_trial() && permit.degraded().is_some(),
        "{permit:?}"
    );
    assert!(relay.swallowed() > 0, "Redis answered the write");
    relay.swallow_after(None);
    drop(permit);
    assert!(matches!(
        breaker.acquire(),
        Err(Error::Rejected(Rejected::HalfOpenFull { .. }))
    ));
    advance(&clock, 500);
    let trial = breaker.acquire().unwrap();
    assert!(trial.is_trial(), "the lost slot was forfeited: {trial:?}");
    trial.report(tripswitch::Outcome::Success).unwrap();
    assert_eq!(breaker.snapshot().unwrap().state, State::Closed);
}

#[test]
fn pybreaker_redis_behaviours() {
    let server = RedisServer::start();
    let clock = clock();
    // Missing keys read as a fresh closed breaker.
    let plain = storage(&server, "py");
    let breaker = builder("missing", &clock)
        .storage(plain.clone())
        .build()
        .unwrap();
    let snapshot = breaker.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
    // The namespace prefixes every key the breaker writes.
    fail(&breaker).unwrap_err();
    assert_eq!(server.cli(&["KEYS", "*"]).trim(), "{py:tripswitch:missing}");
    // opened_at keeps its milliseconds (pybreaker truncates to seconds).
    let precise = builder("precise", &clock)
        .fail_max(1)
        .storage(plain)
        .build()
        .unwrap();
    advance(&clock, 1234);
    fail(&precise).unwrap_err();
    assert_eq!(
        precise.snapshot().unwrap().opened_at_ms,
        Some(tripswitch_tests::T0 + 1234)
    );
    // The storage's fallback_circuit_state feeds breakers that set none.
    let down = RedisStorage::builder(format!(
        "redis://127.0.0.1:{}/",
        tripswitch_tests::free_port()
    ))
    .fallback_circuit_state(State::Open)
    .build()
    .unwrap();
    let rejecting = builder("down", &clock)
        .storage(down.clone())
        .build()
        .unwrap();
    assert!(matches!(
        rejecting.acquire(),
        Err(Error::Rejected(Rejected::StorageUnavailable { .. }))
    ));
    let admitting = builder("down", &clock)
        .storage(down)
        .fallback_state(State::Closed)
        .build()
        .unwrap();
    assert!(admitting.acquire().is_ok());
}

#[test]
fn bad_addresses_are_refused_by_name() {
    match RedisStorage::builder("http://example").build() {
        Err(error) => assert!(
            error.0.contains("invalid Redis address \"http://example\""),
            "{error}"
        ),
        Ok(storage) => panic!("expected an error, got {storage:?}"),
    }
    assert!(
        RedisStorage::cluster_builder(Vec::<String>::new())
            .build()
            .is_err()
    );
    let zero = RedisStorage::builder("redis://127.0.0.1:1/")
        .connect_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        zero.0.contains("connect timeout must be at least 1 ms"),
        "{zero}"
    );
    let zero = RedisStorage::builder("redis://127.0.0.1:1/")
        .response_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        zero.0.contains("response timeout must be at least 1 ms"),
        "{zero}"
    );
}

#[test]
fn a_cluster_shares_breakers_across_slots_and_follows_redirections() {
    let cluster = RedisCluster::start();
    // Given one node only, the client must learn the rest and follow MOVED.
    let first = RedisStorage::cluster_builder([cluster.urls()[0].clone()])
        .namespace("cl")
        .build()
        .unwrap();
    let everywhere = RedisStorage::cluster_builder(cluster.urls())
        .namespace("cl")
        .build()
        .unwrap();
    let clock = clock();
    let names: Vec<String> = (0..12).map(|n| format!("breaker-{n}")).collect();
    let mut owners = std::collections::BTreeSet::new();
    for name in &names {
        let a = builder(name, &clock)
            .fail_max(2)
            .storage(first.clone())
            .build()
            .unwrap();
        let b = builder(name, &clock)
            .fail_max(2)
            .storage(everywhere.clone())
            .build()
            .unwrap();
        fail(&a).unwrap_err();
        assert!(matches!(
            fail(&b),
            Err(CallError::Failed { tripped: true, .. })
        ));
        assert_eq!(a.state().unwrap(), State::Open, "{name}");
        let key = first.key(name);
        let owner = cluster
            .nodes
            .iter()
            .position(|node| node.cli(&["EXISTS", &key]).trim() == "1")
            .expect("some node holds the key");
        owners.insert(owner);
    }
    assert_eq!(
        owners.len(),
        3,
        "the breakers spread over all three masters"
    );
    let mut listed = everywhere.breakers().unwrap();
    listed.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn breakers_are_listed_on_a_cluster_that_asks_for_a_password() {
    let cluster = RedisCluster::start_with(0, &["--requirepass", "p@ss", "--masterauth", "p@ss"]);
    let urls: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| format!("redis://:p%40ss@127.0.0.1:{}/", node.port))
        .collect();
    let storage = RedisStorage::cluster_builder(urls)
        .namespace("pw")
        .build()
        .unwrap();
    let names: Vec<String> = (0..6).map(|n| format!("b{n}")).collect();
    for name in &names {
        tripswitch::CircuitBreaker::builder(name)
            .storage(storage.clone())
            .build()
            .unwrap()
            .operate(tripswitch::Action::Open)
            .unwrap();
    }
    assert_eq!(storage.breakers().unwrap(), names);
}

#[test]
fn call_async_waits_on_redis_without_blocking_the_executor() {
    use futures_lite::future;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = RedisServer::start();
    let redis = RedisStorage::builder(server.url())
        .namespace("async")
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let clock = clock();
    let breaker = builder("async", &clock).storage(redis).build().unwrap();
    assert_eq!(
        future::block_on(breaker.call_async(async { Ok::<_, ()>(1) })).unwrap(),
        1
    );

    // One thread runs both the call and a ticker. While Redis is frozen, the
    // call's storage work waits on the blocking pool, and the ticker goes on.
    server.freeze();
    let ticks = AtomicUsize::new(0);
    let (answer, ()) = future::block_on(future::zip(
        breaker.call_async(async { Ok::<_, ()>(ticks.load(Ordering::SeqCst)) }),
        async {
            for _ in 0..50 {
                ticks.fetch_add(1, Ordering::SeqCst);
                future::yield_now().await;
            }
        },
    ));
    server.thaw();
    // The default fallback (closed) admitted the call once the load timed out.
    let seen = answer.unwrap();
    assert!(
        seen > 0,
        "the executor ran nothing while the breaker waited on Redis"
    );
}

#[test]
fn a_trip_made_after_the_key_was_lost_is_told_to_a_long_lived_process() {
    let server = RedisServer::start();
    let clock = clock();
    let heard = Recorder::default();
    let made = |listener: Option<Recorder>| {
        let builder = builder("lost-key", &clock)
            .fail_max(1)
            .reset_timeout(Duration::from_millis(100))
            .storage(storage(&server, "lost-key"));
        match listener {
            Some(listener) => builder.listener(listener),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let old = made(Some(heard.clone()));
    // Closed, open, half-open, closed: generation 3.
    fail(&old).unwrap_err();
    advance(&clock, 100);
    succeed(&old).unwrap();
    assert_eq!(old.snapshot().unwrap().generation, 3);
    heard.take();
    server.cli(&["FLUSHALL"]);
    // A process that never saw the breaker makes it anew, from generation
    // 0, and trips it.
    let newcomer = made(None);
    fail(&newcomer).unwrap_err();
    assert!(matches!(
        old.acquire(),
        Err(Error::Rejected(Rejected::Open { .. }))
    ));
    let told = heard.changes();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (told[0].current, told[0].remote, told[0].generation),
        (State::Open, true, 5),
        "told above every generation told before: 3 + 1 + its own 1"
    );
    assert_eq!(newcomer.snapshot().unwrap().generation, 5, "lifted");
}

#[test]
fn a_deleted_key_cannot_be_overwritten_by_a_writer_with_an_old_version() {
    let server = RedisServer::start();
    let redis = storage(&server, "deleted");
    let clock = clock();
    let heard = Recorder::default();
    let a = builder("k", &clock)
        .fail_max(3)
        .storage(redis.clone())
        .listener(heard.clone())
        .build()
        .unwrap();
    let operator = builder("k", &clock)
        .fail_max(3)
        .storage(redis.clone())
        .build()
        .unwrap();
    fail(&a).unwrap_err();
    fail(&a).unwrap_err();
    let permit = a.acquire().unwrap();
    server.cli(&["DEL", "{deleted:tripswitch:k}"]);
    operator.force_open().unwrap();
    operator.close().unwrap();
    // a's permit was decided on the record before the delete: it counts in
    // the new record only as a fresh failure, and trips nothing.
    assert!(!permit.failure().unwrap());
    let snapshot = operator.snapshot().unwrap();
    assert_eq!((snapshot.state, snapshot.failures), (State::Closed, 0));
    // After the delete, a trip is still told to a's listeners.
    heard.take();
    for _ in 0..3 {
        fail(&a).unwrap_err();
    }
    assert_eq!(a.state().unwrap(), State::Open);
    assert!(
        heard
            .take()
            .iter()
            .any(|h| matches!(h, Heard::Change(c) if c.current == State::Open)),
        "the trip after the delete is told"
    );
}

#[test]
fn a_restart_between_calls_costs_no_call_its_connection() {
    let mut server = RedisServer::start();
    let redis = storage(&server, "restart");
    let clock = clock();
    let breaker = builder("restart", &clock)
        .fallback_state(State::Open)
        .storage(redis)
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    server.stop();
    server.resume();
    // The pooled connection died with the old server; the read is tried
    // again on a fresh one instead of failing the call.
    assert!(breaker.acquire().is_ok());
    assert_eq!(breaker.snapshot().unwrap().failures, 1);
}
