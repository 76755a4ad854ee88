//! TLS for the tests: a CA made on the spot (rcgen), certificates it signed
//! for the server (127.0.0.1) and a client, and a redis-server with a TLS port.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::{RedisServer, free_port};

/// A CA, a server certificate for 127.0.0.1 and a client certificate it
/// signed, and another CA that signed nothing here; PEM files in `dir`.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Makes the CA (`ca.pem`), another CA that signed nothing here
    /// (`other-ca.pem`), and `server.pem` / `server.key`, `client.pem` /
    /// `client.key`, in `dir`.
    pub fn make(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            Issuer::new(params, key)
        };
        let issuer = ca("ca");
        ca("other-ca");
        for (name, alt) in [("server", "127.0.0.1"), ("client", "client")] {
            let mut params = CertificateParams::new(vec![alt.to_string()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    /// The path of one of its files.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A redis-server with a TLS port (and a password); `clients` is
/// tls-auth-clients (`optional` or `yes`). Returns it and its TLS port;
/// the password is `pw`.
pub fn tls_server(pki: &Pki, clients: &str) -> (RedisServer, u16) {
    let port = free_port();
    let args = [
        "--requirepass".to_string(),
        "pw".into(),
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        pki.file("server.pem"),
        "--tls-key-file".into(),
        pki.file("server.key"),
        "--tls-ca-cert-file".into(),
        pki.file("ca.pem"),
        "--tls-auth-clients".into(),
        clients.into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (RedisServer::start_with(&args), port)
}
