//! Where the CLI's breakers keep their state: memory, or a shared Redis.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tripswitch::{MemoryStorage, RedisStorage, Storage};

/// Storage options shared by the commands.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// A Redis server to share breakers through (repeat for several cluster nodes).
    #[arg(long = "redis", value_name = "URL")]
    pub redis: Vec<String>,
    /// The Redis nodes form a cluster.
    #[arg(long, requires = "redis")]
    pub cluster: bool,
    /// Keeps these breakers apart from others on the same Redis.
    #[arg(long, default_value = "", requires = "redis")]
    pub namespace: String,
}

impl StoreArgs {
    /// The Redis storage, when a Redis was named.
    pub fn redis(&self) -> anyhow::Result<Option<RedisStorage>> {
        if self.redis.is_empty() {
            return Ok(None);
        }
        let builder = if self.cluster {
            RedisStorage::cluster_builder(self.redis.clone())
        } else if let [url] = self.redis.as_slice() {
            RedisStorage::builder(url.clone())
        } else {
            bail!("several --redis addresses need --cluster");
        };
        builder
            .namespace(self.namespace.clone())
            .build()
            .map(Some)
            .with_context(|| format!("connecting to {}", self.describe()))
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
        match (self.redis.as_slice(), self.namespace.as_str()) {
            ([], _) => "memory".into(),
            (nodes, "") => format!("Redis {}", nodes.join(",")),
            (nodes, namespace) => format!("Redis {} (namespace {namespace:?})", nodes.join(",")),
        }
    }
}
