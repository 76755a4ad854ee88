//! The master that Redis Sentinel names, found with a deadline on every
//! step: each Sentinel is asked in turn (`SENTINEL get-master-addr-by-name`)
//! within the storage's connect and response timeouts, so a Sentinel that
//! never answers, or never accepts, costs those timeouts and no more.

use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    TlsCertificates,
};

use crate::storage::StorageError;

/// The Sentinels of one master, and how to reach what they name.
pub(crate) struct Sentinels {
    /// A client per Sentinel, in the order given.
    sentinels: Vec<(String, Client)>,
    /// The master's name, as Sentinel knows it.
    master: String,
    /// The master's credentials.
    master_redis: RedisConnectionInfo,
    /// Whether the master is reached over TLS.
    tls: bool,
    certificates: Option<TlsCertificates>,
    tcp: TcpSettings,
}

impl Sentinels {
    /// Clients for `nodes` (each with its name for messages): credentials
    /// in the first URL that has some reach every Sentinel and, unless
    /// `master_credentials` are given, the master; TLS reaches all when any
    /// URL says `rediss://` or `certificates` are given.
    pub fn new(
        nodes: &[(String, ConnectionInfo)],
        master: &str,
        master_credentials: Option<&(Option<String>, String)>,
        certificates: Option<TlsCertificates>,
        tcp: TcpSettings,
    ) -> Result<Sentinels, RedisError> {
        let credentials = nodes.iter().find_map(|(_, info)| {
            let settings = info.redis_settings();
            settings.password().map(|password| {
                (
                    settings.username().map(str::to_string),
                    password.to_string(),
                )
            })
        });
        let tls = certificates.is_some()
            || nodes
                .iter()
                .any(|(_, info)| matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
        let with_credentials = |credentials: Option<&(Option<String>, String)>| {
            let mut settings = RedisConnectionInfo::default();
            if let Some((username, password)) = credentials {
                if let Some(username) = username {
                    settings = settings.set_username(username);
                }
                settings = settings.set_password(password);
            }
            settings
        };
        let mut sentinels = Vec::new();
        for (name, info) in nodes {
            let (host, port) = host_port(info.addr())?;
            let info = address(host, port, tls)
                .into_connection_info()?
                .set_tcp_settings(tcp.clone())
                .set_redis_settings(with_credentials(credentials.as_ref()));
            sentinels.push((name.clone(), client(info, certificates.clone())?));
        }
        Ok(Sentinels {
            sentinels,
            master: master.to_string(),
            master_redis: with_credentials(master_credentials.or(credentials.as_ref())),
            tls,
            certificates,
            tcp,
        })
    }

    /// A client for the master the first Sentinel to answer names; every
    /// Sentinel's failure, named, when none does.
    pub fn master(
        &self,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Client, StorageError> {
        let mut failures = Vec::new();
        for (name, sentinel) in &self.sentinels {
            let asked = sentinel
                .get_connection_with_timeout(connect_timeout)
                .and_then(|mut con| {
                    con.set_read_timeout(Some(response_timeout))?;
                    con.set_write_timeout(Some(response_timeout))?;
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master)
                        .query::<Option<(String, u16)>>(&mut con)
                });
            match asked {
                Ok(Some((host, port))) => {
                    let info = address(&host, port, self.tls)
                        .into_connection_info()
                        .and_then(|info| {
                            client(
                                info.set_tcp_settings(self.tcp.clone())
                                    .set_redis_settings(self.master_redis.clone()),
                                self.certificates.clone(),
                            )
                        });
                    match info {
                        Ok(client) => return Ok(client),
                        Err(error) => failures.push(format!("{name}: {error}")),
                    }
                }
                Ok(None) => failures.push(format!("{name}: knows no master {:?}", self.master)),
                Err(error) => failures.push(format!("{name}: {error}")),
            }
        }
        Err(StorageError(format!(
            "no Sentinel named master {:?}: {}",
            self.master,
            failures.join("; ")
        )))
    }
}

fn host_port(addr: &ConnectionAddr) -> Result<(&str, u16), RedisError> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Ok((host, *port))
        }
        _ => Err(RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "a Sentinel is reached over TCP, not a Unix socket",
        ))),
    }
}

fn address(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_string(), port)
    }
}

fn client(
    info: ConnectionInfo,
    certificates: Option<TlsCertificates>,
) -> Result<Client, RedisError> {
    match certificates {
        Some(certificates) => Client::build_with_tls(info, certificates),
        None => Client::open(info),
    }
}
