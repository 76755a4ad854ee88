//! A client's request body on its way to the upstream, watched: whether it
//! arrived whole, failed, or is still coming. A body the client cut short or
//! sent too slowly is the client's failure, not the upstream's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// How far a request body has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Frames are still to come.
    Coming,
    /// The body ended.
    Whole,
    /// The body failed (the client went away, or sent less than it said).
    Failed,
    /// The body was dropped unfinished (the upstream answered or failed
    /// first): it will not come.
    Dropped,
}

/// A request body that tells its [`Progress`] to a [`Watch`].
pub struct Watched {
    inner: WasiBody,
    progress: watch::Sender<Progress>,
    /// The upstream side asked for more and the client has not sent it.
    client_behind: Arc<AtomicBool>,
}

/// Where a [`Watched`] body's progress is read.
#[derive(Clone)]
pub struct Watch {
    progress: watch::Receiver<Progress>,
    client_behind: Arc<AtomicBool>,
}

/// Wraps `body`; an empty body is whole at once.
pub fn watched(body: WasiBody) -> (WasiBody, Watch) {
    let first = if body.is_end_stream() {
        Progress::Whole
    } else {
        Progress::Coming
    };
    let (progress, receiver) = watch::channel(first);
    let client_behind = Arc::new(AtomicBool::new(false));
    let body = Watched {
        inner: body,
        progress,
        client_behind: Arc::clone(&client_behind),
    };
    let watch = Watch {
        progress: receiver,
        client_behind,
    };
    (http_body_util::BodyExt::boxed_unsync(body), watch)
}

impl Watch {
    /// The progress now.
    pub fn now(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Whether the body is late because of the client (the upstream side
    /// waits for it) rather than the upstream (which has not asked for it,
    /// or not yet: before the first poll, the upstream side is blamed).
    pub fn client_behind(&self) -> bool {
        self.client_behind.load(Ordering::Relaxed)
    }

    /// Waits until the body is no longer coming; what became of it.
    pub async fn settled(&mut self) -> Progress {
        self.progress
            .wait_for(|p| *p != Progress::Coming)
            .await
            .map_or(Progress::Dropped, |progress| *progress)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.progress.send_if_modified(|progress| {
            let coming = *progress == Progress::Coming;
            if coming {
                *progress = Progress::Dropped;
            }
            coming
        });
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.client_behind
            .store(polled.is_pending(), Ordering::Relaxed);
        match &polled {
            Poll::Ready(None) => self.progress.send_replace(Progress::Whole),
            Poll::Ready(Some(Err(_))) => self.progress.send_replace(Progress::Failed),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => {
                self.progress.send_replace(Progress::Whole)
            }
            _ => return polled,
        };
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
