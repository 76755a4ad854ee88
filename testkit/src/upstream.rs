//! An HTTP/1.1 upstream of the test's own on a loopback port: it behaves as
//! the test says (answer a status, answer late, drop the connection) and
//! counts the requests it gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the upstream does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers with this status.
    Answer(u16),
    /// Waits, then answers with the status.
    Late(Duration, u16),
    /// Closes the connection without answering.
    Reset,
    /// Answers with the status and these extra header lines (each ending
    /// in `\r\n`), as if it were someone else.
    Pretend(u16, &'static str),
    /// Answers 200 with a body of this many bytes.
    Bulk(usize),
}

/// The upstream; its threads run until the test process ends.
pub struct Upstream {
    /// The port it listens on.
    pub port: u16,
    behaviour: Arc<Mutex<Behaviour>>,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts it answering 200.
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the upstream");
        let port = listener.local_addr().expect("a bound port").port();
        let behaviour = Arc::new(Mutex::new(Behaviour::Answer(200)));
        let hits = Arc::new(AtomicUsize::new(0));
        let (shared, count) = (Arc::clone(&behaviour), Arc::clone(&hits));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (shared, count) = (Arc::clone(&shared), Arc::clone(&count));
                std::thread::spawn(move || serve(stream, &shared, &count));
            }
        });
        Upstream {
            port,
            behaviour,
            hits,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers every request from now on with `status`.
    pub fn answer(&self, status: u16) {
        self.behave(Behaviour::Answer(status));
    }

    /// Does `behaviour` with every request from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().expect("the behaviour lock") = behaviour;
    }

    /// Requests received so far (answered or not).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One connection: requests in, answers out, kept alive.
fn serve(stream: TcpStream, behaviour: &Mutex<Behaviour>, hits: &AtomicUsize) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().expect("cloning a stream"));
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if !reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            return;
        }
        let mut length = 0;
        loop {
            line.clear();
            if !reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let now = *behaviour.lock().expect("the behaviour lock");
        let (code, extra) = match now {
            Behaviour::Answer(code) => (code, ""),
            Behaviour::Late(wait, code) => {
                std::thread::sleep(wait);
                (code, "")
            }
            Behaviour::Reset => return,
            Behaviour::Pretend(code, extra) => (code, extra),
            Behaviour::Bulk(bytes) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {bytes}\r\n\r\n");
                if writer.write_all(head.as_bytes()).is_err()
                    || writer.write_all(&vec![b'x'; bytes]).is_err()
                {
                    return;
                }
                continue;
            }
        };
        let text = format!("upstream says {code}\n");
        let sent = write!(
            writer,
            "HTTP/1.1 {code} Whatever\r\nContent-Type: text/plain\r\n{extra}Content-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if sent.is_err() {
            return;
        }
    }
}
