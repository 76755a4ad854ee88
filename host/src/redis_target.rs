//! Where a Redis storage connects: one server, a cluster, or the master that
//! Sentinel names, over TLS when a URL says `rediss://` or certificates are
//! given; and the connections it opens there.

use std::path::PathBuf;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::io::tcp::TcpSettings;
use redis::{
    Client, ClientTlsConfig, Connection, ConnectionLike, IntoConnectionInfo, RedisError,
    TlsCertificates,
};

use crate::redis_sentinel::Sentinels;
use crate::storage::StorageError;

/// How the nodes given are reached.
#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// One server.
    Standalone,
    /// Cluster nodes.
    Cluster,
    /// Sentinels, asked for the master of this name.
    Sentinel(String),
}

/// Files for TLS: the CA that signs the servers' certificates, and a client
/// certificate with its key for servers that ask for one.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The certificates, read from their files (none: no file given).
    fn certificates(&self) -> Result<Option<TlsCertificates>, StorageError> {
        if !self.any() {
            return Ok(None);
        }
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| {
                StorageError(format!("reading the TLS {what} {}: {e}", path.display()))
            })
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert, "client certificate")?,
                client_key: read(key, "client key")?,
            }),
            (None, None) => None,
            _ => {
                return Err(StorageError(
                    "a TLS client certificate needs its key, and a key its certificate".into(),
                ));
            }
        };
        let root_cert = self.ca.as_ref().map(|ca| read(ca, "CA file")).transpose()?;
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// What a target is made from.
pub(crate) struct Options<'a> {
    pub nodes: &'a [String],
    pub mode: &'a Mode,
    pub tls: &'a TlsFiles,
    /// The master's username and password behind Sentinel (default: the
    /// sentinel URL's).
    pub master_credentials: Option<&'a (Option<String>, String)>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// Where the storage connects.
pub(crate) enum Target {
    Standalone(Client),
    Cluster(ClusterClient),
    Sentinel(Sentinels),
}

/// One open connection.
pub(crate) enum Conn {
    Standalone(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    pub fn link(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Standalone(con) => con,
            Conn::Cluster(con) => con.as_mut(),
        }
    }
}

fn nodelay() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

impl Target {
    /// Checks the addresses and reads the certificates; connects nothing yet.
    pub fn build(options: &Options<'_>) -> Result<Target, StorageError> {
        let address: Vec<String> = options.nodes.iter().map(|n| redact(n)).collect();
        let address = address.join(",");
        let bad = |e: RedisError| StorageError(format!("invalid Redis address {address:?}: {e}"));
        if options.nodes.is_empty() {
            return Err(StorageError("no Redis address given".into()));
        }
        let certificates = options.tls.certificates()?;
        match options.mode {
            Mode::Cluster => {
                let mut builder = ClusterClient::builder(options.nodes.to_vec())
                    .tcp_settings(nodelay())
                    .connection_timeout(options.connect_timeout)
                    .response_timeout(options.response_timeout)
                    .retries(1)
                    // The client's retry after CLUSTERDOWN / TRYAGAIN waits no
                    // longer than a response may take.
                    .min_retry_wait(millis(options.response_timeout))
                    .max_retry_wait(millis(options.response_timeout));
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                Ok(Target::Cluster(builder.build().map_err(bad)?))
            }
            Mode::Standalone => {
                if options.nodes.len() > 1 {
                    return Err(StorageError(format!(
                        "{} addresses given for a standalone Redis; use cluster mode",
                        options.nodes.len()
                    )));
                }
                let info = options.nodes[0]
                    .as_str()
                    .into_connection_info()
                    .map_err(bad)?
                    .set_tcp_settings(nodelay());
                let client = match certificates {
                    Some(certificates) => Client::build_with_tls(info, certificates),
                    None => Client::open(info),
                };
                Ok(Target::Standalone(client.map_err(bad)?))
            }
            Mode::Sentinel(master) => {
                let mut nodes = Vec::new();
                for node in options.nodes {
                    let info = node.as_str().into_connection_info().map_err(bad)?;
                    nodes.push((redact(node), info));
                }
                let sentinels = Sentinels::new(
                    &nodes,
                    master,
                    options.master_credentials,
                    certificates,
                    nodelay(),
                )
                .map_err(bad)?;
                Ok(Target::Sentinel(sentinels))
            }
        }
    }
}

/// A Redis URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // A password may hold `@` itself: the host follows the last one.
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials
                .split_once(':')
                .map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::redact;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn no_password_shows_in_any_url(
            scheme in "(redis|rediss|unix|[a-z]{0,6})",
            user in "[^:@/]{0,8}",
            password in "[^/]{4,16}",
            host in "[a-z0-9.\\[\\]:]{0,20}",
            rest in "(/[0-9]{0,2})?(\\?[a-z=&]{0,10})?",
        ) {
            let url = format!("{scheme}://{user}:{password}@{host}{rest}");
            let shown = redact(&url);
            prop_assume!(!format!("{scheme}{user}{host}{rest}").contains(&password));
            prop_assert!(!shown.contains(&password), "{url} shown as {shown}");
        }

        #[test]
        fn any_text_is_shown_without_a_panic(text in any::<String>()) {
            let _ = redact(&text);
        }
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("redis://:pw@h:1/"), "redis://:***@h:1/");
        assert_eq!(redact("rediss://u:pw@h:1/0"), "rediss://u:***@h:1/0");
        assert_eq!(redact("redis://u@h:1"), "redis://u:***@h:1");
        assert_eq!(redact("redis://h:1/"), "redis://h:1/");
        assert_eq!(redact("h:1"), "h:1");
        assert_eq!(redact("redis://:p@ss@h:1/"), "redis://:***@h:1/");
        assert_eq!(redact("redis://u:a:b@c@[::1]:1/"), "redis://u:***@[::1]:1/");
    }
}
