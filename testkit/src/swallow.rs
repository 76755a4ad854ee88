//! A loopback TCP relay to a server that can swallow the server's replies:
//! every request still reaches the server (which acts on it), but on a
//! connection that sent a request holding the bytes it watches for, what the
//! server answers from then on is dropped, as a reply lost on the network or
//! one that comes after the client's timeout.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A relay in front of `127.0.0.1:target`; it lives as long as the value.
pub struct Swallow {
    /// The port clients connect to.
    pub port: u16,
    rules: Arc<Rules>,
    _listener: TcpListener,
}

/// What the relay swallows, shared by its connections.
#[derive(Default)]
struct Rules {
    /// The replies on a connection from its request holding these bytes on.
    after: Mutex<Option<Vec<u8>>>,
    /// Bytes of replies dropped.
    swallowed: AtomicUsize,
}

impl Swallow {
    /// A relay to the loopback server on `target`, passing replies through.
    pub fn to(target: u16) -> Swallow {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        let rules = Arc::new(Rules::default());
        let accepting = listener.try_clone().expect("cloning a listener");
        let shared = Arc::clone(&rules);
        std::thread::spawn(move || {
            for client in accepting.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                relay(client, server, Arc::clone(&shared));
            }
        });
        Swallow {
            port,
            rules,
            _listener: listener,
        }
    }

    /// Drops the replies on any connection from its first request holding
    /// `needle` on (none: stops arming connections; those armed stay so).
    pub fn swallow_after(&self, needle: Option<&[u8]>) {
        *self.rules.after.lock().expect("the rules' lock") = needle.map(<[u8]>::to_vec);
    }

    /// Bytes of replies dropped so far.
    pub fn swallowed(&self) -> usize {
        self.rules.swallowed.load(Ordering::SeqCst)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Copies each way on its own thread until either side closes.
fn relay(client: TcpStream, server: TcpStream, rules: Arc<Rules>) {
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let armed = Arc::new(AtomicBool::new(false));
    let (arming, watching) = (Arc::clone(&armed), Arc::clone(&rules));
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read @ 1..) = client_in.read(&mut buffer) {
            let request = &buffer[..read];
            let after = watching.after.lock().expect("the rules' lock");
            if let Some(needle) = after.as_deref()
                && request.windows(needle.len()).any(|w| w == needle)
            {
                arming.store(true, Ordering::SeqCst);
            }
            drop(after);
            if server_out.write_all(request).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(Shutdown::Both);
        let _ = client_in.shutdown(Shutdown::Both);
    });
    let (mut server_in, mut client_out) = (server, client);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read @ 1..) = server_in.read(&mut buffer) {
            if armed.load(Ordering::SeqCst) {
                rules.swallowed.fetch_add(read, Ordering::SeqCst);
                continue;
            }
            if client_out.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
        let _ = server_in.shutdown(Shutdown::Both);
    });
}
