//! Redis as production runs it, against real servers on loopback: a primary,
//! a replica and three Sentinels (breakers follow a failover without a
//! restart), a write lost in a failover (no host builds on it), a cluster
//! with replicas (breakers in a failed primary's slots continue), writers of
//! the previous compare-and-swap script beside the current one, and
//! Sentinels that never answer (a call and the flush thread go on).
//!
//! The servers are tuned for speed (down-after 1 s, failover-timeout 2 s,
//! cluster-node-timeout 1 s): each failover takes a few seconds.

use std::time::{Duration, Instant};

use tripswitch::{Action, CircuitBreaker, RedisStorage, State, Storage, SwapResult};
use tripswitch_testkit::{Sentinels, Silent};
use tripswitch_tests::{RedisCluster, RedisServer, builder, clock, fail, succeed};

/// A primary and a replica of it, in sync.
fn primary_and_replica(password: Option<&str>) -> (RedisServer, RedisServer) {
    let auth: Vec<String> = password
        .map(|p| {
            vec![
                "--requirepass".into(),
                p.into(),
                "--masterauth".into(),
                p.into(),
            ]
        })
        .unwrap_or_default();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let primary = RedisServer::start_with(&auth);
    let mut replica_args = auth.clone();
    let port = primary.port.to_string();
    replica_args.extend(["--replicaof", "127.0.0.1", &port]);
    let replica = RedisServer::start_with(&replica_args);
    wait_for("the replica to sync", || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    (primary, replica)
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn through_sentinel(sentinels: &Sentinels, password: Option<&str>) -> RedisStorage {
    RedisStorage::sentinel_builder(
        tripswitch_testkit::SENTINEL_MASTER,
        sentinels.urls(password),
    )
    .namespace("sentinel")
    .retry_interval(Duration::ZERO)
    .response_timeout(Duration::from_millis(500))
    .build()
    .unwrap()
}

/// Waits until `primary` has sent every write to its replica.
fn replicated(primary: &RedisServer) {
    assert_eq!(primary.cli(&["WAIT", "1", "5000"]).trim(), "1");
}

#[test]
fn breakers_follow_a_sentinel_failover_without_a_restart() {
    let password = Some("s3cret");
    let (mut primary, replica) = primary_and_replica(password);
    let sentinels = Sentinels::start(primary.port, 1, password);
    let storage = through_sentinel(&sentinels, password);
    let clock = clock();
    let breaker = builder("db", &clock)
        .fail_max(3)
        .fallback_state(State::Closed)
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.snapshot().unwrap().failures, 2);
    replicated(&primary);

    primary.kill();
    // Meanwhile calls follow the fallback state, each within the timeouts.
    let started = Instant::now();
    let permit = breaker.acquire().unwrap();
    assert!(permit.degraded().is_some(), "the fallback admitted it");
    permit.ignore().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    sentinels.wait_for_master(&replica, password);
    wait_for("the breaker to reach the promoted replica", || {
        breaker.snapshot().is_ok()
    });
    assert_eq!(
        breaker.snapshot().unwrap().failures,
        2,
        "the replica holds what the primary had"
    );
    assert!(matches!(
        fail(&breaker),
        Err(tripswitch::CallError::Failed { tripped: true, .. })
    ));
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert_eq!(
        replica.cli(&["EXISTS", &storage.key("db")]).trim(),
        "1",
        "written on the promoted replica"
    );
}

#[test]
fn a_write_lost_in_a_failover_is_never_built_on() {
    let password = Some("s3cret");
    let (mut primary, replica) = primary_and_replica(password);
    let sentinels = Sentinels::start(primary.port, 1, password);
    let clock = clock();
    // Host A holds two permits of a closed breaker.
    let a_storage = through_sentinel(&sentinels, password);
    let a = builder("db", &clock)
        .fail_max(5)
        .storage(a_storage.clone())
        .build()
        .unwrap();
    succeed(&a).unwrap();
    fail(&a).unwrap_err();
    replicated(&primary);
    let first = a.acquire().unwrap();
    let second = a.acquire().unwrap();

    // A's failure reaches the primary but not the replica, which has been
    // cut off (and cannot come back: its masterauth is now wrong): lost in
    // the failover.
    replica.cli(&["CONFIG", "SET", "masterauth", "wrong"]);
    primary.cli(&["CLIENT", "KILL", "TYPE", "replica"]);
    first.failure().unwrap();
    let lost = a.snapshot().unwrap().version;
    primary.kill();
    sentinels.wait_for_master(&replica, password);

    // Host B, after the failover, opens the circuit.
    let b = builder("db", &clock)
        .fail_max(5)
        .storage(through_sentinel(&sentinels, password))
        .build()
        .unwrap();
    wait_for("B to reach the promoted replica", || b.snapshot().is_ok());
    assert_eq!(
        b.snapshot().unwrap().failures,
        1,
        "the replica missed A's write"
    );
    b.operate(Action::Open).unwrap();
    let written = b.snapshot().unwrap().version;
    assert_ne!(written, lost, "the version after the failover is new");
    assert!(written > lost);

    // A's storage reconnects (a read: A's breaker still holds the lost record).
    wait_for("A's storage to reach the promoted replica", || {
        a_storage.load("db").is_ok()
    });
    // A reports its second permit on the record it last saw, the lost one:
    // its compare-and-swap must not match B's record.
    second.failure().unwrap();
    let after = b.snapshot().unwrap();
    assert_eq!(after.state, State::Open, "B's open stands");
    assert_eq!(after.failures, 1, "nothing was built on the lost write");
}

#[test]
fn breakers_in_a_failed_primarys_slots_continue_on_its_replica() {
    let mut cluster = RedisCluster::start_with_replicas(1);
    let storage = RedisStorage::cluster_builder(cluster.urls())
        .namespace("replicas")
        .retry_interval(Duration::ZERO)
        .response_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let clock = clock();
    let breakers: Vec<CircuitBreaker> = (0..9)
        .map(|n| {
            builder(&format!("svc-{n}"), &clock)
                .fail_max(3)
                .fallback_state(State::Closed)
                .storage(storage.clone())
                .build()
                .unwrap()
        })
        .collect();
    for breaker in &breakers {
        fail(breaker).unwrap_err();
        fail(breaker).unwrap_err();
    }
    // The first master's breakers, once its replica has them.
    let master = &cluster.nodes[0];
    let owned: Vec<&CircuitBreaker> = breakers
        .iter()
        .filter(|b| master.cli(&["EXISTS", &storage.key(b.name())]).trim() == "1")
        .collect();
    assert!(!owned.is_empty(), "some breakers live on the first master");
    assert_eq!(master.cli(&["WAIT", "1", "5000"]).trim(), "1");
    cluster.nodes[0].kill();
    wait_for("the cluster to fail over", || {
        cluster.nodes[1..]
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    for breaker in &owned {
        wait_for("the breaker's slot to answer", || {
            breaker.snapshot().is_ok()
        });
        assert_eq!(
            breaker.snapshot().unwrap().failures,
            2,
            "{}",
            breaker.name()
        );
        assert!(matches!(
            fail(breaker),
            Err(tripswitch::CallError::Failed { tripped: true, .. })
        ));
    }
    // The other masters' breakers kept their counts throughout.
    for breaker in breakers
        .iter()
        .filter(|b| !owned.iter().any(|o| o.name() == b.name()))
    {
        let snapshot = breaker.snapshot().unwrap();
        assert_eq!(
            (snapshot.state, snapshot.failures),
            (State::Closed, 2),
            "{}",
            breaker.name()
        );
    }
}

/// The compare-and-swap script of tripswitch 0.1 and 0.2 (versions grew by
/// one), for the rolling-upgrade test: a writer still running it.
const PREVIOUS_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v')
local version
if current == false then
  if ARGV[1] ~= '' then return {0} end
  local now = redis.call('TIME')
  version = tonumber(now[1]) * 1000000 + tonumber(now[2])
elseif current ~= ARGV[1] then
  return {0, current, redis.call('HGET', KEYS[1], 'd')}
else
  version = tonumber(current) + 1
end
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', version), 'd', ARGV[2])
return {1, version}
"#;

/// A storage that writes with the previous script (and reads as both do).
#[derive(Clone)]
struct PreviousRelease {
    current: RedisStorage,
    client: redis::Client,
}

impl Storage for PreviousRelease {
    fn load(&self, key: &str) -> Result<Option<tripswitch::Entry>, tripswitch::StorageError> {
        self.current.load(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, tripswitch::StorageError> {
        let mut con = self.client.get_connection().unwrap();
        let reply: redis::Value = redis::Script::new(PREVIOUS_SCRIPT)
            .key(self.current.key(key))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(data)
            .invoke(&mut con)
            .map_err(|e| tripswitch::StorageError(e.to_string()))?;
        let redis::Value::Array(fields) = reply else {
            panic!("the previous script answered {reply:?}");
        };
        Ok(match fields.as_slice() {
            [redis::Value::Int(1), redis::Value::Int(version)] => {
                SwapResult::Written(*version as u64)
            }
            [redis::Value::Int(0)] => SwapResult::Conflict(None),
            _ => SwapResult::Conflict(self.current.load(key)?),
        })
    }
}

#[test]
fn writers_of_the_previous_script_stay_correct_beside_the_current_one() {
    let server = RedisServer::start();
    let current = RedisStorage::builder(server.url())
        .namespace("upgrade")
        .build()
        .unwrap();
    let previous = PreviousRelease {
        current: current.clone(),
        client: redis::Client::open(server.url()).unwrap(),
    };
    // Versions only grow, whichever script writes, and a stale version conflicts.
    let mut versions = Vec::new();
    let mut last = None;
    for round in 0..6 {
        let writer: &dyn Storage = if round % 2 == 0 { &current } else { &previous };
        let Ok(SwapResult::Written(version)) = writer.compare_and_swap("k", last, b"x") else {
            panic!("round {round}: the write at the current version went through");
        };
        if let Some(before) = last {
            assert!(
                matches!(writer.compare_and_swap("k", Some(before), b"stale"),
                    Ok(SwapResult::Conflict(Some(entry))) if entry.version == version),
                "round {round}: a stale version conflicts"
            );
        }
        versions.push(version);
        last = Some(version);
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    // Two breakers, one on each release, share one circuit exactly.
    let clock = clock();
    let old = builder("svc", &clock)
        .fail_max(4)
        .storage(previous)
        .build()
        .unwrap();
    let new = builder("svc", &clock)
        .fail_max(4)
        .storage(current)
        .build()
        .unwrap();
    for breaker in [&old, &new, &old] {
        fail(breaker).unwrap_err();
    }
    assert_eq!(new.snapshot().unwrap().failures, 3);
    assert!(matches!(
        fail(&new),
        Err(tripswitch::CallError::Failed { tripped: true, .. })
    ));
    assert!(matches!(
        old.call(|| Ok::<_, ()>(())),
        Err(tripswitch::CallError::Rejected(_))
    ));
}

/// A storage behind two Sentinels that never answer, each given 300 ms to
/// connect and 300 ms to answer.
fn behind(silent: &Silent, full: &Silent) -> RedisStorage {
    RedisStorage::sentinel_builder(
        tripswitch_testkit::SENTINEL_MASTER,
        [silent.url(), full.url()],
    )
    .connect_timeout(Duration::from_millis(300))
    .response_timeout(Duration::from_millis(300))
    .retry_interval(Duration::ZERO)
    .build()
    .unwrap()
}

/// A storage in memory until it is switched to a Redis behind Sentinels.
#[derive(Clone)]
struct Switched {
    memory: tripswitch::MemoryStorage,
    redis: RedisStorage,
    to_redis: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Switched {
    fn now(&self) -> &dyn Storage {
        if self.to_redis.load(std::sync::atomic::Ordering::SeqCst) {
            &self.redis
        } else {
            &self.memory
        }
    }
}

impl Storage for Switched {
    fn load(&self, key: &str) -> Result<Option<tripswitch::Entry>, tripswitch::StorageError> {
        self.now().load(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, tripswitch::StorageError> {
        self.now().compare_and_swap(key, expected, data)
    }
}

/// A breaker on `storage` that holds its window outcomes for 100 ms.
fn holding(name: &str, clock: &tripswitch::ManualClock, storage: impl Storage) -> CircuitBreaker {
    builder(name, clock)
        .storage(storage)
        .failure_rate_threshold(50)
        .flush_interval(Duration::from_millis(100))
        .build()
        .unwrap()
}

#[test]
fn the_flush_thread_goes_on_behind_silent_sentinels() {
    let (silent, full) = (Silent::accepting(), Silent::never_accepting());
    let switched = Switched {
        memory: tripswitch::MemoryStorage::new(),
        redis: behind(&silent, &full),
        to_redis: Default::default(),
    };
    let clock = clock();
    let behind = holding("behind-silence", &clock, switched.clone());
    let memory = tripswitch::MemoryStorage::new();
    let beside = holding("beside", &clock, memory.clone());
    succeed(&behind).unwrap();
    succeed(&beside).unwrap();
    // Both hold an outcome; the Sentinels of the first go silent, and both
    // fall due. The flush thread tries the first, scheduled first (each try
    // costs the Sentinels' timeouts, then fails), and still merges the
    // second.
    switched
        .to_redis
        .store(true, std::sync::atomic::Ordering::SeqCst);
    clock.advance(Duration::from_millis(100));
    let reader = builder("beside", &clock)
        .storage(memory.clone())
        .build()
        .unwrap();
    let start = Instant::now();
    while reader.snapshot().unwrap().window.calls != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the flush thread never merged the other breaker's outcome"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Back on memory, so that the dropped breaker's merge does not keep the
    // flush thread busy for the other tests.
    switched
        .to_redis
        .store(false, std::sync::atomic::Ordering::SeqCst);
    drop(behind);
}

#[test]
fn sentinels_that_never_answer_or_never_accept_cost_their_timeouts_only() {
    let (silent, full) = (Silent::accepting(), Silent::never_accepting());
    let storage = behind(&silent, &full);
    let breaker = CircuitBreaker::builder("behind-silence")
        .storage(storage)
        .build()
        .unwrap();
    // On a thread of its own, so that a hang fails the test instead of
    // stalling it.
    let (sent, answers) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let started = Instant::now();
            let call = succeed(&breaker);
            let snapshot = breaker.snapshot();
            let _ = sent.send((call, snapshot, started.elapsed()));
        }
    });
    for _ in 0..2 {
        let (call, snapshot, took) = answers
            .recv_timeout(Duration::from_secs(30))
            .expect("the breaker answered despite the silent Sentinels");
        // Two Sentinels, a connect and a response timeout each at most,
        // for the call and for the snapshot, with room for a slow machine.
        assert!(took < Duration::from_secs(8), "took {took:?}");
        call.expect("the fallback state (closed) admits the call");
        let error = snapshot.expect_err("no master to read from").to_string();
        assert!(error.contains("no Sentinel named master"), "{error}");
        for port in [silent.port, full.port] {
            assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        }
    }
}
