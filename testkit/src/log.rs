//! What a child process writes to a pipe, collected line by line so that a
//! test can wait for a line.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The text read so far from a pipe, filled by a thread of its own.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<String>>);

impl Log {
    /// Reads `pipe` on a thread until it closes, calling `each` with every
    /// line before keeping it.
    pub fn collect(
        pipe: impl Read + Send + 'static,
        mut each: impl FnMut(&str) + Send + 'static,
    ) -> Log {
        let log = Log::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                each(&line);
                let mut text = kept.0.lock().unwrap_or_else(|e| e.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        log
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to 5 s for `wanted` to appear; panics with the log if it does not.
    pub fn wait_for(&self, wanted: &str) {
        let start = Instant::now();
        while !self.text().contains(wanted) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{wanted:?} never appeared; the log:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
