//! The proxy's limits, fitted to the open-file limit: each client
//! connection holds a file, and each request in flight one more to the
//! upstream, so the two caps together stay under it.

/// Files kept for everything else: the listeners, Redis, the metrics
/// scrapes, the runtime, the plugin's files.
const RESERVED_FILES: u64 = 64;

/// The connection and in-flight caps that fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Client connections open at once.
    pub connections: usize,
    /// Requests served at once.
    pub in_flight: usize,
}

/// Raises the soft open-file limit to the hard one; the limit then (none:
/// unlimited or unknown).
pub fn open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum != limit.current {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

/// `asked` lowered, each to at most half of what `open_files` leaves once
/// the reserve is kept, so that accepting never runs out of files.
pub fn fit(asked: Caps, open_files: Option<u64>) -> Caps {
    let Some(files) = open_files else {
        return asked;
    };
    let half = usize::try_from(files.saturating_sub(RESERVED_FILES) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    Caps {
        connections: asked.connections.min(half),
        in_flight: asked.in_flight.min(half),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_the_open_files() {
        let asked = Caps {
            connections: 4096,
            in_flight: 1024,
        };
        assert_eq!(fit(asked, None), asked);
        assert_eq!(fit(asked, Some(1 << 20)), asked);
        assert_eq!(
            fit(asked, Some(256)),
            Caps {
                connections: 96,
                in_flight: 96
            }
        );
        assert_eq!(
            fit(asked, Some(10)),
            Caps {
                connections: 1,
                in_flight: 1
            }
        );
    }
}
