//! Breaker work that ends even when its caller stops waiting: a dropped
//! future hands what is left to a background thread, so that no count is
//! lost and no trial slot is left taken.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `work` on the blocking pool; if the awaiting future is dropped, the
/// work still runs to its end.
pub(crate) async fn on_pool<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    struct Detach<T>(Option<blocking::Task<T>>);
    impl<T> Drop for Detach<T> {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.detach();
            }
        }
    }
    let mut task = Detach(Some(blocking::unblock(work)));
    std::future::poll_fn(|cx| {
        let running = task.0.as_mut().expect("polled after completion");
        Pin::new(running).poll(cx)
    })
    .await
}

/// Waits for `future` on this thread: at once for a blocking storage's
/// steps, which are done when first polled.
pub(crate) fn wait<F: Future>(future: F) -> F::Output {
    futures_lite::future::block_on(future)
}

/// A future that, dropped before it ends, finishes on the blocking pool.
pub(crate) struct Finish<T: Send + 'static>(Option<Pin<Box<dyn Future<Output = T> + Send>>>);

impl<T: Send + 'static> Finish<T> {
    /// Wraps `future`.
    pub fn new(future: impl Future<Output = T> + Send + 'static) -> Finish<T> {
        Finish(Some(Box::pin(future)))
    }
}

impl<T: Send + 'static> Future for Finish<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let running = self.0.as_mut().expect("polled after completion");
        let output = std::task::ready!(running.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Finish<T> {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take() {
            blocking::unblock(move || drop(wait(rest))).detach();
        }
    }
}
