//! Where the CLI's breakers keep their state: memory, or a shared Redis.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tripswitch::{MemoryStorage, RedisStorage, Storage, redact_redis_url};

/// Storage options shared by the commands.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// A Redis server to share breakers through, `redis://` or `rediss://`
    /// (TLS), with `user:password@` if it asks (repeat for several cluster nodes).
    #[arg(long = "redis", value_name = "URL", conflicts_with = "sentinel")]
    pub redis: Vec<String>,
    /// The Redis nodes form a cluster.
    #[arg(long, requires = "redis")]
    pub cluster: bool,
    /// A Redis Sentinel to ask for the master (repeat for several); a
    /// password in its URL is the sentinels' and the master's.
    #[arg(long, value_name = "URL", requires = "master_name")]
    pub sentinel: Vec<String>,
    /// The name of the master the sentinels watch.
    #[arg(long, value_name = "NAME", requires = "sentinel")]
    pub master_name: Option<String>,
    /// A CA file (PEM) to trust for the servers' TLS certificates.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Keeps these breakers apart from others on the same Redis.
    #[arg(long, default_value = "")]
    pub namespace: String,
}

impl StoreArgs {
    /// The Redis storage, when a Redis was named.
    pub fn redis(&self) -> anyhow::Result<Option<RedisStorage>> {
        let mut builder = if let Some(master) = &self.master_name {
            RedisStorage::sentinel_builder(master.clone(), self.sentinel.clone())
        } else if self.redis.is_empty() {
            if self.tls_ca.is_some() || self.tls_cert.is_some() || !self.namespace.is_empty() {
                bail!("--tls-ca, --tls-cert and --namespace need --redis or --sentinel");
            }
            return Ok(None);
        } else if self.cluster {
            RedisStorage::cluster_builder(self.redis.clone())
        } else if let [url] = self.redis.as_slice() {
            RedisStorage::builder(url.clone())
        } else {
            bail!("several --redis addresses need --cluster");
        };
        if let Some(ca) = &self.tls_ca {
            builder = builder.tls_ca(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.tls_client_cert(cert, key);
        }
        builder
            .namespace(self.namespace.clone())
            .build()
            .map(Some)
            .with_context(|| format!("connecting to {}", self.describe()))
    }

    /// Whether a shared store (Redis, or Sentinel) was named.
    pub fn shared(&self) -> bool {
        !self.redis.is_empty() || self.master_name.is_some()
    }

    /// The storage: Redis if named, else memory of this process's own.
    pub fn storage(&self) -> anyhow::Result<Arc<dyn Storage>> {
        Ok(match self.redis()? {
            Some(redis) => Arc::new(redis),
            None => Arc::new(MemoryStorage::new()),
        })
    }

    /// Where the state lives, for a header line.
    pub fn describe(&self) -> String {
        let redacted = |urls: &[String]| {
            let urls: Vec<String> = urls.iter().map(|u| redact_redis_url(u)).collect();
            urls.join(",")
        };
        let place = match (&self.master_name, self.redis.as_slice()) {
            (Some(master), _) => format!(
                "Redis master {master:?} via Sentinel {}",
                redacted(&self.sentinel)
            ),
            (None, []) => return "memory".into(),
            (None, nodes) => format!("Redis {}", redacted(nodes)),
        };
        match self.namespace.as_str() {
            "" => place,
            namespace => format!("{place} (namespace {namespace:?})"),
        }
    }
}
