//! Breakers shared through Redis (one server, a cluster, or a master behind
//! Sentinel, over TLS if asked): one hash per breaker, read with one command
//! and written with one Lua script.
//!
//! A breaker named `db` in namespace `payments` lives under the key
//! `{payments:tripswitch:db}`, a hash with two fields: `v`, the version, and
//! `d`, the record the component encoded. The braces make the whole key its
//! own hash tag, so a breaker lives in one cluster slot and breakers spread
//! over the cluster.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use redis::cluster::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Connection, ConnectionLike, RedisError, Script, Value};

use crate::redis_target::{Conn, Mode, Options, Target, TlsFiles, redact};
use crate::storage::{Entry, Storage, StorageError, SwapResult};
use crate::types::State;

/// Checks the version and writes, in one round trip. ARGV[1] is the expected
/// version ("" = absent), ARGV[2] the record. Returns {1, new version}, or
/// {0} when the key is absent, or {0, version, record} on a conflict.
///
/// Every write takes max(previous + 1, the server's clock in microseconds),
/// and a key that is created (again) starts from the clock. So a key's
/// versions never repeat, even when a failover loses writes the old primary
/// had acknowledged (the promoted replica's next write is later than the
/// lost one) or a key is deleted, evicted or flushed: a host never mistakes
/// a new record for one it cached. The assumption: the servers' clocks
/// roughly agree and move forward. Writers still running the previous
/// script (previous + 1 only) stay correct beside this one during a rolling
/// upgrade: both only ever raise a key's version, and a compare-and-swap
/// needs the exact version it read.
pub const COMPARE_AND_SWAP_SCRIPT: &str = r#"
local current = redis.call('HGET', KEYS[1], 'v')
if current ~= false and current ~= ARGV[1] then
  return {0, current, redis.call('HGET', KEYS[1], 'd')}
end
if current == false and ARGV[1] ~= '' then return {0} end
local now = redis.call('TIME')
local version = tonumber(now[1]) * 1000000 + tonumber(now[2])
if current ~= false then
  version = math.max(version, tonumber(current) + 1)
end
redis.call('HSET', KEYS[1], 'v', string.format('%.0f', version), 'd', ARGV[2])
return {1, version}
"#;
/// Breaker storage in Redis, standalone or cluster; clones are cheap and
/// share connections.
#[derive(Clone)]
pub struct RedisStorage {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    target: Target,
    /// What the storage was pointed at, for messages.
    address: String,
    namespace: String,
    fallback: Option<State>,
    response_timeout: Duration,
    connect_timeout: Duration,
    retry_interval: Duration,
    script: Script,
    idle: Mutex<Vec<Conn>>,
    /// While Redis is down: until when no new connection is tried, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("address", &self.inner.address)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStorage`].
#[must_use]
pub struct RedisStorageBuilder {
    nodes: Vec<String>,
    mode: Mode,
    tls: TlsFiles,
    master_credentials: Option<(Option<String>, String)>,
    namespace: String,
    fallback: Option<State>,
    connect_timeout: Duration,
    response_timeout: Duration,
    retry_interval: Duration,
}

impl RedisStorageBuilder {
    /// Keeps breakers apart from other users of the same Redis (pybreaker's `namespace`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// What breakers on this storage do while Redis is down, unless a breaker
    /// says otherwise (pybreaker's `fallback_circuit_state`).
    pub fn fallback_circuit_state(mut self, state: State) -> Self {
        self.fallback = Some(state);
        self
    }

    /// How long a connection attempt may take (default 100 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 100 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// After a failed connection, how long calls fail at once before the next
    /// attempt (default 100 ms), so a dead Redis does not cost every call a timeout.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// Trusts the CA in this PEM file for the servers' certificates (default:
    /// the system's roots); TLS is used for `rediss://` URLs, and for every
    /// connection once certificates are given.
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls.ca = Some(ca.into());
        self
    }

    /// Presents this client certificate and key (PEM files) to servers that
    /// ask for one.
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert = Some(cert.into());
        self.tls.key = Some(key.into());
        self
    }

    /// Behind Sentinel: the master's username (none: the default user) and
    /// password, when they are not the sentinels' (default: those of the
    /// first sentinel URL that has a password).
    pub fn master_credentials(mut self, username: Option<String>, password: String) -> Self {
        self.master_credentials = Some((username, password));
        self
    }

    /// Checks the addresses and reads the TLS files; connects lazily, so a
    /// service can start while Redis is down.
    pub fn build(self) -> Result<RedisStorage, StorageError> {
        for (what, timeout) in [
            ("connect", self.connect_timeout),
            ("response", self.response_timeout),
        ] {
            if timeout.is_zero() {
                return Err(StorageError(format!(
                    "the Redis {what} timeout must be at least 1 ms (0 would wait forever)"
                )));
            }
        }
        let nodes: Vec<String> = self.nodes.iter().map(|n| redact(n)).collect();
        let address = match &self.mode {
            Mode::Sentinel(master) => format!("{master} via Sentinel {}", nodes.join(",")),
            _ => nodes.join(","),
        };
        let target = Target::build(&Options {
            nodes: &self.nodes,
            mode: &self.mode,
            tls: &self.tls,
            master_credentials: self.master_credentials.as_ref(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
        })?;
        Ok(RedisStorage {
            inner: std::sync::Arc::new(Inner {
                target,
                address,
                namespace: self.namespace,
                fallback: self.fallback,
                response_timeout: self.response_timeout,
                connect_timeout: self.connect_timeout,
                retry_interval: self.retry_interval,
                script: Script::new(COMPARE_AND_SWAP_SCRIPT),
                idle: Mutex::new(Vec::new()),
                down: Mutex::new(None),
            }),
        })
    }
}

impl RedisStorage {
    /// A storage on one Redis server, e.g. `redis://127.0.0.1:6379/0`.
    pub fn builder(url: impl Into<String>) -> RedisStorageBuilder {
        RedisStorageBuilder {
            nodes: vec![url.into()],
            mode: Mode::Standalone,
            tls: TlsFiles::default(),
            master_credentials: None,
            namespace: String::new(),
            fallback: None,
            connect_timeout: Duration::from_millis(100),
            response_timeout: Duration::from_millis(100),
            retry_interval: Duration::from_millis(100),
        }
    }

    /// A storage on a Redis cluster, given one or more of its nodes.
    pub fn cluster_builder<S: Into<String>>(
        nodes: impl IntoIterator<Item = S>,
    ) -> RedisStorageBuilder {
        RedisStorageBuilder {
            nodes: nodes.into_iter().map(Into::into).collect(),
            mode: Mode::Cluster,
            ..RedisStorage::builder(String::new())
        }
    }

    /// A storage on the master that Redis Sentinel names `master`, given one
    /// or more sentinels (`redis://[:password@]host:port`; a password there
    /// authenticates to the sentinels and, unless
    /// [`master_credentials`](RedisStorageBuilder::master_credentials) says
    /// otherwise, to the master). After a failover, new connections go to
    /// the promoted replica.
    pub fn sentinel_builder<S: Into<String>>(
        master: impl Into<String>,
        sentinels: impl IntoIterator<Item = S>,
    ) -> RedisStorageBuilder {
        RedisStorageBuilder {
            nodes: sentinels.into_iter().map(Into::into).collect(),
            mode: Mode::Sentinel(master.into()),
            ..RedisStorage::builder(String::new())
        }
    }

    /// A storage on one Redis server with every default.
    pub fn open(url: impl Into<String>) -> Result<RedisStorage, StorageError> {
        RedisStorage::builder(url).build()
    }

    /// The Redis key that holds the breaker named `name`.
    pub fn key(&self, name: &str) -> String {
        key_in(&self.inner.namespace, name)
    }

    /// The namespace, as given.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn prefix(&self) -> String {
        prefix(&self.inner.namespace)
    }

    /// The names of the breakers stored in this namespace, sorted.
    pub fn breakers(&self) -> Result<Vec<String>, StorageError> {
        let pattern = format!("{{{}*}}", glob_escape(&self.prefix()));
        let mut keys: Vec<String> = Vec::new();
        match &self.inner.target {
            Target::Standalone(client) => {
                let mut con = self.connect_standalone(client)?;
                keys.extend(scan(&mut con, &pattern).map_err(|e| self.failed("SCAN", &e))?);
            }
            Target::Sentinel(_) => {
                let mut con = self.connect_master()?;
                keys.extend(scan(&mut con, &pattern).map_err(|e| self.failed("SCAN", &e))?);
            }
            Target::Cluster(_) => {
                // Each master is scanned through the cluster connection, so
                // its TLS, credentials and address are the cluster's own.
                let Conn::Cluster(mut cluster) = self.checkout()? else {
                    return Err(StorageError(
                        "a cluster target opened no cluster connection".into(),
                    ));
                };
                let found = cluster_masters(&mut cluster).and_then(|masters| {
                    let mut keys = Vec::new();
                    for (host, port) in masters {
                        keys.extend(scan_node(&mut cluster, &pattern, host, port)?);
                    }
                    Ok(keys)
                });
                // A connection that failed is dropped, not pooled again.
                keys.extend(found.map_err(|e| self.failed("SCAN", &e))?);
                self.idle().push(Conn::Cluster(cluster));
            }
        }
        let prefix = format!("{{{}", self.prefix());
        let mut names: Vec<String> = keys
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix)?.strip_suffix('}'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn connect_standalone(&self, client: &Client) -> Result<Connection, StorageError> {
        let con = client
            .get_connection_with_timeout(self.inner.connect_timeout)
            .map_err(|e| self.failed("connect", &e))?;
        let timeout = Some(self.inner.response_timeout);
        con.set_read_timeout(timeout)
            .and_then(|()| con.set_write_timeout(timeout))
            .map_err(|e| self.failed("connect", &e))?;
        Ok(con)
    }

    /// A connection to the master Sentinel names now.
    fn connect_master(&self) -> Result<Connection, StorageError> {
        let Target::Sentinel(sentinels) = &self.inner.target else {
            return Err(StorageError(
                "only a Sentinel target has a master to ask for".into(),
            ));
        };
        let client = sentinels
            .master(self.inner.connect_timeout, self.inner.response_timeout)
            .map_err(|e| {
                StorageError(format!(
                    "Redis {} (asking Sentinel for the master): {}",
                    self.inner.address, e.0
                ))
            })?;
        self.connect_standalone(&client)
    }

    /// Takes an idle connection or opens one, unless Redis was just found down.
    fn checkout(&self) -> Result<Conn, StorageError> {
        if let Some(con) = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
        {
            return Ok(con);
        }
        {
            let down = self.inner.down.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((until, why)) = down.as_ref()
                && Instant::now() < *until
            {
                return Err(StorageError(why.clone()));
            }
        }
        let opened = match &self.inner.target {
            Target::Standalone(client) => self.connect_standalone(client).map(Conn::Standalone),
            Target::Sentinel(_) => self.connect_master().map(Conn::Standalone),
            Target::Cluster(client) => client
                .get_connection()
                .map(|con| Conn::Cluster(Box::new(con)))
                .map_err(|e| self.failed("connect", &e)),
        };
        let mut down = self.inner.down.lock().unwrap_or_else(|e| e.into_inner());
        match &opened {
            Ok(_) => *down = None,
            Err(error) => {
                *down = Some((Instant::now() + self.inner.retry_interval, error.0.clone()))
            }
        }
        opened
    }

    /// Runs `command` on a pooled connection. A broken connection is dropped
    /// with every idle one (after a restart they are all stale); a command
    /// that reads only is tried once more on a fresh connection.
    fn with<T>(
        &self,
        command: impl Fn(&mut dyn ConnectionLike) -> Result<T, RedisError>,
        what: &str,
        read_only: bool,
    ) -> Result<T, StorageError> {
        let mut tries = if read_only { 2 } else { 1 };
        loop {
            tries -= 1;
            let mut con = self.checkout()?;
            let error = match command(con.link()) {
                Ok(value) => {
                    self.idle().push(con);
                    return Ok(value);
                }
                Err(error) => error,
            };
            // READONLY: a former master now a replica, after a failover.
            let broken = error.code() == Some("READONLY")
                || error.is_io_error()
                || error.is_timeout()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_unrecoverable_error()
                || error.is_cluster_error();
            if !broken {
                self.idle().push(con);
                return Err(self.failed(what, &error));
            }
            self.idle().clear();
            // A timeout is no stale connection: asking again would double the wait.
            if tries == 0 || error.is_timeout() {
                return Err(self.failed(what, &error));
            }
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failed(&self, what: &str, error: &RedisError) -> StorageError {
        let detail = error.to_string();
        if error.code() == Some("WRONGTYPE") || detail.contains("WRONGTYPE") {
            return StorageError(format!(
                "Redis {} ({what}): the breaker's key holds another type of value, \
                 not a tripswitch record: {detail}",
                self.inner.address
            ));
        }
        StorageError(format!("Redis {} ({what}): {detail}", self.inner.address))
    }

    fn not_ours(&self, key: &str, what: &str) -> StorageError {
        StorageError(format!(
            "Redis {}: key {key:?} does not hold a tripswitch record ({what})",
            self.inner.address
        ))
    }
}

/// The Redis key that holds the breaker named `name` in `namespace` (empty: none).
pub fn key_in(namespace: &str, name: &str) -> String {
    format!("{{{}}}", prefix(namespace) + name)
}

fn prefix(namespace: &str) -> String {
    if namespace.is_empty() {
        "tripswitch:".to_string()
    } else {
        format!("{namespace}:tripswitch:")
    }
}

/// The host and port of each of the cluster's masters, from `CLUSTER SLOTS`.
fn cluster_masters(cluster: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RedisError> {
    let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query(cluster)?;
    let mut masters = Vec::new();
    if let Value::Array(ranges) = slots {
        for range in ranges {
            if let Value::Array(fields) = range
                && let Some(Value::Array(master)) = fields.get(2)
                && let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1))
                && let Ok(port) = u16::try_from(*port)
            {
                let host = match host {
                    Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    Value::SimpleString(text) => text.clone(),
                    _ => continue,
                };
                masters.push((host, port));
            }
        }
    }
    masters.sort();
    masters.dedup();
    Ok(masters)
}

/// The keys matching `pattern` on one node of a cluster.
fn scan_node(
    cluster: &mut ClusterConnection,
    pattern: &str,
    host: String,
    port: u16,
) -> Result<Vec<String>, RedisError> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port,
        });
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = cluster.route_command(&command, routing)?;
        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// SCANs a server for keys matching `pattern`.
fn scan(con: &mut Connection, pattern: &str) -> Result<Vec<String>, RedisError> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Escapes Redis glob characters.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn version(key: &str, text: &[u8], storage: &RedisStorage) -> Result<u64, StorageError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| storage.not_ours(key, "its version is not a number"))
}

impl Storage for RedisStorage {
    fn load(&self, name: &str) -> Result<Option<Entry>, StorageError> {
        let key = self.key(name);
        let (version_text, data): (Option<Vec<u8>>, Option<Vec<u8>>) = self.with(
            |con| redis::cmd("HMGET").arg(&key).arg("v").arg("d").query(con),
            "HMGET",
            true,
        )?;
        match (version_text, data) {
            (None, None) => Ok(None),
            (Some(text), Some(data)) => Ok(Some(Entry {
                version: version(&key, &text, self)?,
                data,
            })),
            _ => Err(self.not_ours(&key, "a hash without both v and d")),
        }
    }

    fn compare_and_swap(
        &self,
        name: &str,
        expected: Option<u64>,
        data: &[u8],
    ) -> Result<SwapResult, StorageError> {
        let key = self.key(name);
        let expected = expected.map(|v| v.to_string()).unwrap_or_default();
        let reply: Value = self.with(
            |con| {
                self.inner
                    .script
                    .key(&key)
                    .arg(&expected)
                    .arg(data)
                    .invoke(con)
            },
            "compare-and-swap script",
            false,
        )?;
        let Value::Array(fields) = reply else {
            return Err(self.not_ours(&key, "the script answered oddly"));
        };
        match fields.as_slice() {
            [Value::Int(1), Value::Int(version)] => Ok(SwapResult::Written(*version as u64)),
            [Value::Int(0)] => Ok(SwapResult::Conflict(None)),
            [
                Value::Int(0),
                Value::BulkString(text),
                Value::BulkString(data),
            ] => Ok(SwapResult::Conflict(Some(Entry {
                version: version(&key, text, self)?,
                data: data.clone(),
            }))),
            _ => Err(self.not_ours(&key, "a hash without both v and d")),
        }
    }

    fn fallback_state(&self) -> Option<State> {
        self.inner.fallback
    }
}
