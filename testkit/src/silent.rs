//! Servers that never answer, for deadlines: one accepts connections and
//! holds them without a byte; one never accepts (its queue is full, so a
//! connect hangs until the client's timeout).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A loopback server that never answers; it lives as long as the value.
pub struct Silent {
    /// The port it is bound to.
    pub port: u16,
    _listener: TcpListener,
    /// Connections that fill its queue (never accepting), or that it accepted.
    _held: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Silent {
    /// Accepts every connection and never answers on it.
    pub fn accepting() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accepting, keep) = (
            listener.try_clone().expect("cloning a listener"),
            std::sync::Arc::clone(&held),
        );
        std::thread::spawn(move || {
            for stream in accepting.incoming().map_while(Result::ok) {
                keep.lock().expect("the held lock").push(stream);
            }
        });
        Silent {
            port,
            _listener: listener,
            _held: held,
        }
    }

    /// Never accepts: its queue is filled at once, so a new connection's
    /// handshake is never answered.
    pub fn never_accepting() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut fillers = Vec::new();
        while let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(stream);
            assert!(fillers.len() < 100_000, "the listen queue never filled");
        }
        Silent {
            port,
            _listener: listener,
            _held: std::sync::Arc::new(std::sync::Mutex::new(fillers)),
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}
