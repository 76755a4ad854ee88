//! A blocking storage served as an async one: every step yields to its
//! executor once before it answers, so a breaker must really await it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tripswitch::{AsyncStorage, Entry, State, Storage, StorageFuture, SwapResult};

/// `S` behind the async storage contract, each step pending once.
#[derive(Clone, Debug)]
pub struct Awaited<S>(pub S);

impl<S: Storage> AsyncStorage for Awaited<S> {
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Option<Entry>> {
        Box::pin(async move {
            YieldOnce(false).await;
            self.0.load(key)
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        data: &'a [u8],
    ) -> StorageFuture<'a, SwapResult> {
        Box::pin(async move {
            YieldOnce(false).await;
            self.0.compare_and_swap(key, expected, data)
        })
    }

    fn peek_version(&self, key: &str) -> Option<Option<u64>> {
        self.0.peek_version(key)
    }

    fn fallback_state(&self) -> Option<State> {
        self.0.fallback_state()
    }
}

/// Pending on its first poll (waking its task at once), ready on the next.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
