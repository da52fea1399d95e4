//! The streams of one HTTP/2 connection, run inside the connection's own task
//! instead of a task each: each stream's future sits in a slot with a waker of
//! its own, and a wake-up polls only the streams that were woken. A slot (the
//! future's box and its waker) is reused by the next stream, so a stream costs
//! no allocation of its own.
//!
//! Not for: anything about HTTP/2 itself (`super::h2`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};

/// Slots an empty set keeps for the next streams ([`StreamSet::trim`]).
const KEPT: usize = 16;

/// Futures of one type, polled when woken.
pub(crate) struct StreamSet<F> {
    slots: Vec<Slot<F>>,
    free: Vec<usize>,
    queue: Arc<Queue>,
    /// The woken slots being polled now (kept for its capacity).
    batch: Vec<usize>,
    len: usize,
}

struct Slot<F> {
    future: Pin<Box<Option<F>>>,
    waker: Waker,
    wake: Arc<SlotWake>,
}

/// The slots woken since the last poll, and the connection's task to wake.
#[derive(Default)]
struct Queue {
    inner: Mutex<QueueInner>,
}

#[derive(Default)]
struct QueueInner {
    woken: Vec<usize>,
    task: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        // Only pushes and swaps happen under the lock: nothing to leave half done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct SlotWake {
    index: usize,
    /// Already in the queue: a second wake-up adds nothing.
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let task = {
            let mut q = self.queue.lock();
            q.woken.push(self.index);
            q.task.clone()
        };
        if let Some(t) = task {
            t.wake();
        }
    }
}

impl<F: Future<Output = ()>> StreamSet<F> {
    pub(crate) fn new() -> Self {
        StreamSet {
            slots: Vec::new(),
            free: Vec::new(),
            queue: Arc::default(),
            batch: Vec::new(),
            len: 0,
        }
    }

    /// Futures not finished yet.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds a future; it is polled at the next [`StreamSet::poll`].
    pub(crate) fn push(&mut self, future: F) {
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i].future.set(Some(future));
                i
            }
            None => {
                let i = self.slots.len();
                let wake = Arc::new(SlotWake {
                    index: i,
                    queued: AtomicBool::new(false),
                    queue: self.queue.clone(),
                });
                self.slots.push(Slot {
                    future: Box::pin(Some(future)),
                    waker: Waker::from(wake.clone()),
                    wake,
                });
                i
            }
        };
        self.len += 1;
        self.slots[index].wake.wake_by_ref();
    }

    /// Wakes every future not finished yet: something they all look at
    /// changed (the connection's drain, `super::h2`).
    pub(crate) fn wake_all(&self) {
        for slot in &self.slots {
            if slot.future.is_some() {
                slot.wake.wake_by_ref();
            }
        }
    }

    /// With no future left, gives back the slots beyond the first [`KEPT`]: a
    /// burst of streams does not keep its memory for the connection's life
    /// (a slot holds a stream's whole future, about 2.7 KB), and a steady
    /// load of up to [`KEPT`] streams at once allocates nothing.
    pub(crate) fn trim(&mut self) {
        if self.len == 0 && self.slots.len() > KEPT {
            self.slots.truncate(KEPT);
            self.free.clear();
            self.free.extend(0..KEPT);
        }
    }

    /// Polls every future woken since the last call; returns how many finished.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> usize {
        {
            let mut q = self.queue.lock();
            if !q.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                q.task = Some(cx.waker().clone());
            }
            std::mem::swap(&mut q.woken, &mut self.batch);
        }
        let mut finished = 0;
        for &i in &self.batch {
            // A waker of a slot [`StreamSet::trim`] dropped may still fire.
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            slot.wake.queued.store(false, Ordering::Release);
            let mut scx = Context::from_waker(&slot.waker);
            let Some(future) = slot.future.as_mut().as_pin_mut() else {
                continue;
            };
            if future.poll(&mut scx).is_ready() {
                slot.future.set(None);
                self.free.push(i);
                self.len -= 1;
                finished += 1;
            }
        }
        self.batch.clear();
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn only_woken_futures_are_polled_and_slots_are_reused() {
        let polls = Arc::new(AtomicUsize::new(0));
        let task = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let parked: Arc<Mutex<Vec<Waker>>> = Arc::default();
        let make = |ready_after: usize| {
            let (polls, parked) = (polls.clone(), parked.clone());
            let mut n = 0;
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                n += 1;
                if n > ready_after {
                    return Poll::Ready(());
                }
                parked.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            })
        };
        let mut set = StreamSet::new();
        set.push(make(0));
        set.push(make(1));
        assert_eq!(set.poll(&mut cx), 1);
        assert_eq!(set.len(), 1);
        assert_eq!(polls.load(Ordering::Relaxed), 2);
        // Nothing woken: nothing polled.
        assert_eq!(set.poll(&mut cx), 0);
        assert_eq!(polls.load(Ordering::Relaxed), 2);
        // The parked one is woken (twice): polled once, and the task is woken.
        let w = parked.lock().unwrap().pop().unwrap();
        w.wake_by_ref();
        w.wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
        assert_eq!(set.poll(&mut cx), 1);
        assert_eq!(polls.load(Ordering::Relaxed), 3);
        assert_eq!(set.len(), 0);
        // A new future takes a freed slot.
        set.push(make(0));
        assert_eq!(set.slots.len(), 2);
        assert_eq!(set.poll(&mut cx), 1);
        // Emptied after a burst, the set keeps KEPT slots; a stale waker of a
        // dropped one is ignored.
        for _ in 0..KEPT + 4 {
            set.push(make(1));
        }
        assert_eq!(set.poll(&mut cx), 0);
        let wakers: Vec<Waker> = parked.lock().unwrap().drain(..).collect();
        for w in &wakers {
            w.wake_by_ref();
        }
        assert_eq!(set.poll(&mut cx), KEPT + 4);
        set.trim();
        assert_eq!(set.slots.len(), KEPT);
        for w in wakers {
            w.wake();
        }
        assert_eq!(set.poll(&mut cx), 0);
        set.push(make(0));
        assert_eq!(set.poll(&mut cx), 1);
    }

    #[test]
    fn wake_all_polls_every_unfinished_future_once() {
        let polls = Arc::new(AtomicUsize::new(0));
        let task = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let make = |ready_after: usize| {
            let polls = polls.clone();
            let mut n = 0;
            std::future::poll_fn(move |_| {
                polls.fetch_add(1, Ordering::Relaxed);
                n += 1;
                if n > ready_after {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        let mut set = StreamSet::new();
        for ready_after in [0, 5, 5] {
            set.push(make(ready_after));
        }
        assert_eq!(set.poll(&mut cx), 1);
        assert_eq!(polls.load(Ordering::Relaxed), 3);
        // Nobody woke them: nothing polled; wake_all: the two left, once each.
        assert_eq!(set.poll(&mut cx), 0);
        set.wake_all();
        set.wake_all();
        // Each stream's first wake-up wakes the task; the second wake_all adds nothing.
        assert_eq!(task.0.load(Ordering::Relaxed), 2);
        assert_eq!(set.poll(&mut cx), 0);
        assert_eq!(polls.load(Ordering::Relaxed), 5);
        assert_eq!(set.len(), 2);
    }
}
