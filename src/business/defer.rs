//! Lets the link tasks write between the slices of a long guest event.
//!
//! A worker's link task writes once the thread has nothing else to run (it defers itself
//! with `tokio::task::yield_now`), so the replies to a whole read of events leave in one
//! write. A long event breaks that rule's promise: wasmtime's fuel yield wakes the task at
//! once and returns `Pending`, the `LocalSet` polls it again straight away, and the deferred
//! link task — holding the replies to the events before it — waits until the set has run
//! 61 polls, which can be the whole event (ten slices of 10M fuel each by default).
//!
//! [`DeferSelfWakes`] polls a future with a waker of its own: a wake-up the future gives
//! itself *while being polled* (the fuel yield) is turned into tokio's deferred yield, so
//! the runtime runs its deferred tasks before the next slice; any other wake-up goes to the
//! task as usual. Replies held for a batch then wait at most one fuel slice of a long
//! event, and short events (which never yield) are not affected.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// The waker handed to the wrapped future. Made once per business instance and reused.
#[derive(Default)]
pub(crate) struct SelfWakes {
    polling: AtomicBool,
    woken_in_poll: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for SelfWakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.polling.load(Ordering::Acquire) {
            self.woken_in_poll.store(true, Ordering::Release);
            return;
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

/// Polls `inner`, deferring the wake-ups it gives itself during a poll (see the module).
pub(crate) struct DeferSelfWakes<'a, F> {
    inner: Pin<&'a mut F>,
    wakes: &'a Arc<SelfWakes>,
    waker: Waker,
    deferred: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl<'a, F: Future> DeferSelfWakes<'a, F> {
    pub(crate) fn new(inner: Pin<&'a mut F>, wakes: &'a Arc<SelfWakes>) -> Self {
        DeferSelfWakes {
            inner,
            waker: Waker::from(wakes.clone()),
            wakes,
            deferred: None,
        }
    }
}

impl<F: Future> Future for DeferSelfWakes<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if let Some(deferred) = this.deferred.as_mut() {
            if deferred.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.deferred = None;
        }
        {
            let mut task = this.wakes.task.lock().unwrap_or_else(|e| e.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        this.wakes.woken_in_poll.store(false, Ordering::Release);
        this.wakes.polling.store(true, Ordering::Release);
        let polled = this
            .inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        this.wakes.polling.store(false, Ordering::Release);
        if polled.is_pending() && this.wakes.woken_in_poll.swap(false, Ordering::AcqRel) {
            // The future asked to run again at once: do so after the runtime's deferred
            // tasks instead.
            let mut deferred: Pin<Box<dyn Future<Output = ()>>> =
                Box::pin(tokio::task::yield_now());
            if deferred.as_mut().poll(cx).is_pending() {
                this.deferred = Some(deferred);
            } else {
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Pending `n` times, waking itself each time (as a fuel yield does).
    struct Slices(u32);

    impl Future for Slices {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A task deferred with `yield_now` runs between the slices of a wrapped future, and
    /// only after all of them without the wrapper.
    #[test]
    fn deferred_tasks_run_between_slices() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        for wrapped in [true, false] {
            let done_slices = local.block_on(&runtime, async move {
                let slices_done = Rc::new(Cell::new(0u32));
                let seen_at = Rc::new(Cell::new(None));
                let (done, seen) = (slices_done.clone(), seen_at.clone());
                let deferred = tokio::task::spawn_local(async move {
                    tokio::task::yield_now().await;
                    seen.set(Some(done.get()));
                });
                // The sliced work is a task of the set, as the business code is.
                let work = tokio::task::spawn_local(async move {
                    let wakes = Arc::new(SelfWakes::default());
                    let counted = async {
                        // 200 slices: more than the LocalSet's 61 polls per tick.
                        for _ in 0..200 {
                            Slices(1).await;
                            slices_done.set(slices_done.get() + 1);
                        }
                    };
                    tokio::pin!(counted);
                    if wrapped {
                        DeferSelfWakes::new(counted.as_mut(), &wakes).await;
                    } else {
                        counted.await;
                    }
                });
                work.await.unwrap();
                deferred.await.unwrap();
                seen_at.get().expect("the deferred task ran")
            });
            if wrapped {
                assert!(done_slices <= 2, "ran after {done_slices} slices");
            } else {
                assert!(done_slices >= 60, "ran after {done_slices} slices");
            }
        }
    }
}
