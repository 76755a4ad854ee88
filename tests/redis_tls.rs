//! Redis over TLS with a test CA the test makes (rcgen): a breaker works
//! through `rediss://` with the CA file, with a client certificate when the
//! server asks for one, and a wrong password, a wrong CA or a missing client
//! certificate are clear errors.

use std::path::PathBuf;

use tripswitch::{RedisStorage, State, Storage};
use tripswitch_testkit::tls::{Pki, tls_server};
use tripswitch_tests::{builder, clock, fail};

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tripswitch-tls-{}-{name}", std::process::id()))
}

#[test]
fn a_breaker_works_over_tls_with_the_test_ca() {
    let pki = Pki::make(&scratch("ok"));
    let (server, port) = tls_server(&pki, "optional");
    let storage = RedisStorage::builder(format!("rediss://:pw@127.0.0.1:{port}/"))
        .tls_ca(pki.file("ca.pem"))
        .namespace("tls")
        .build()
        .unwrap();
    let clock = clock();
    let breaker = builder("db", &clock)
        .fail_max(2)
        .storage(storage.clone())
        .build()
        .unwrap();
    fail(&breaker).unwrap_err();
    fail(&breaker).unwrap_err();
    assert_eq!(breaker.state().unwrap(), State::Open);
    assert_eq!(server.cli(&["EXISTS", &storage.key("db")]).trim(), "1");
}

#[test]
fn a_wrong_password_a_wrong_ca_and_no_tls_are_clear_errors() {
    let pki = Pki::make(&scratch("wrong"));
    let (_server, port) = tls_server(&pki, "optional");
    let load = |url: String, ca: &str| {
        RedisStorage::builder(url)
            .tls_ca(pki.file(ca))
            .build()
            .unwrap()
            .load("db")
            .unwrap_err()
            .0
    };
    let wrong_password = load(format!("rediss://:nope@127.0.0.1:{port}/"), "ca.pem");
    assert!(
        wrong_password
            .to_lowercase()
            .contains("authentication failed"),
        "{wrong_password}"
    );
    assert!(
        !wrong_password.contains("nope"),
        "no password in messages: {wrong_password}"
    );
    let wrong_ca = load(format!("rediss://:pw@127.0.0.1:{port}/"), "other-ca.pem");
    assert!(
        wrong_ca.to_lowercase().contains("certificate"),
        "{wrong_ca}"
    );
    let missing = RedisStorage::builder(format!("rediss://:pw@127.0.0.1:{port}/"))
        .tls_ca(pki.file("no-such-ca.pem"))
        .build()
        .unwrap_err()
        .0;
    assert!(
        missing.contains("reading the TLS CA file") && missing.contains("no-such-ca.pem"),
        "{missing}"
    );
    let half = RedisStorage::builder(format!("rediss://:pw@127.0.0.1:{port}/"))
        .tls_client_cert(pki.file("client.pem"), pki.file("no-such.key"))
        .build()
        .unwrap_err()
        .0;
    assert!(half.contains("client key"), "{half}");
}

#[test]
fn a_server_that_asks_for_a_client_certificate_gets_one() {
    let pki = Pki::make(&scratch("mtls"));
    let (_server, port) = tls_server(&pki, "yes");
    let url = format!("rediss://:pw@127.0.0.1:{port}/");
    let without = RedisStorage::builder(url.clone())
        .tls_ca(pki.file("ca.pem"))
        .build()
        .unwrap();
    assert!(
        without.load("db").is_err(),
        "no client certificate, no session"
    );
    let with = RedisStorage::builder(url)
        .tls_ca(pki.file("ca.pem"))
        .tls_client_cert(pki.file("client.pem"), pki.file("client.key"))
        .build()
        .unwrap();
    assert_eq!(with.load("db"), Ok(None));
}
