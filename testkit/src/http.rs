//! A minimal HTTP/1.1 client for tests: one request per connection, the
//! whole response read (the servers under test answer with small bodies):
//! up to its `content-length` or its last chunk, else to the connection's end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr`, or a message that says what went wrong.
pub fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    request(addr, "GET", path)
}

/// `method path` on `addr`, with no body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> Result<Response, String> {
    let length = if method == "GET" {
        ""
    } else {
        "content-length: 0\r\n"
    };
    let head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{length}connection: close\r\n\r\n");
    exchange(addr, head.as_bytes())
}

/// Sends `raw` on a new connection to `addr` and reads the response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .write_all(raw)
        .map_err(|e| format!("sending to {addr}: {e}"))?;
    read_response(&mut stream)
}

/// Reads a response from `stream` (waiting at most 30 s for each read).
pub fn read_response(stream: &mut TcpStream) -> Result<Response, String> {
    let addr = stream
        .peer_addr()
        .map_or_else(|_| "the server".to_string(), |a| a.to_string());
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let read = stream
            .read(&mut buffer)
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        if read == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..read]);
        if complete(&raw) {
            break;
        }
    }
    parse(&raw).ok_or_else(|| {
        format!(
            "{addr} sent no valid HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Whether `raw` holds a whole response that says how long it is (some
/// servers, such as Envoy after a local reply, close the connection only
/// after a delay).
fn complete(raw: &[u8]) -> bool {
    let Some(response) = parse(raw) else {
        return false;
    };
    let text = String::from_utf8_lossy(raw);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    match response.header("content-length") {
        Some(length) => length.parse().is_ok_and(|n: usize| body.len() >= n),
        None => response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_owned()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}
