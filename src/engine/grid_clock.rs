//! One timer for every liveness loop: the loops sleep until their next grid point on this
//! clock instead of each on its own tokio sleep.
//!
//! Liveness probes of all units fall on one grid (`probing::alive_due`), so at a grid point
//! every loop wakes together. With a tokio sleep each, every loop that set its next deadline
//! also told the runtime's driver to look again (tokio-rs/tokio:
//! tokio/src/runtime/time/mod.rs, `reregister`: an earlier deadline than the driver's next
//! wake unparks it, and with nothing else pending every one is earlier): one write to the
//! runtime's eventfd per probe, and one more turn of the driver. tokio's wheel also wakes the
//! driver once per level it cascades through, three times for a 5 s sleep. This clock keeps the
//! waiting loops in one ordered map and arms one timerfd (`FineTimer::sleep_exact`) for the
//! earliest of them: an idle daemon wakes once per grid point, reads the timer, runs the
//! probes, and arms it again. The loops are woken from the runtime's own thread, which costs
//! no system call.
//!
//! The clock's driver is a task spawned with the first wait. It ends when the clock is dropped.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::fine_timer::FineTimer;

/// A timer shared by many sleepers. Cheap to clone: clones are the same clock.
#[derive(Clone)]
pub(crate) struct GridClock {
    owner: Arc<Owner>,
}

/// What the clock's handles share; the driver ends when it is dropped.
struct Owner {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Tells the driver that its deadline moved earlier, or that the clock closed.
    rearm: Notify,
}

#[derive(Default)]
struct State {
    /// The waiting sleeps, by deadline, then by ticket (unique per sleep).
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_ticket: u64,
    /// The deadline the driver sleeps until, if it sleeps on one.
    armed_for: Option<Instant>,
    driver_started: bool,
    closed: bool,
}

impl GridClock {
    pub(crate) fn new() -> Self {
        Self {
            owner: Arc::new(Owner {
                shared: Arc::new(Shared {
                    state: Mutex::new(State::default()),
                    rearm: Notify::new(),
                }),
            }),
        }
    }

    /// Sleeps until `due` (at once if it has passed).
    pub(crate) fn sleep_until(&self, due: Instant) -> GridSleep {
        GridSleep {
            shared: self.owner.shared.clone(),
            due,
            ticket: None,
        }
    }
}

impl Default for GridClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Ends the driver when the clock's last handle is dropped. A sleep still waiting then is
/// woken by nothing, as a timer of a dropped runtime would be: the loops that wait on the
/// clock are cancelled before the clock goes.
impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.rearm.notify_one();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // The state is consistent at every unlock (no panic can leave it half-changed), so a
    // poisoned lock is taken as it is.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A wait on a [`GridClock`].
pub(crate) struct GridSleep {
    shared: Arc<Shared>,
    due: Instant,
    ticket: Option<u64>,
}

impl Future for GridSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if Instant::now() >= this.due {
            if let Some(ticket) = this.ticket.take() {
                lock(&this.shared).waiting.remove(&(this.due, ticket));
            }
            return Poll::Ready(());
        }
        let mut state = lock(&this.shared);
        let ticket = *this.ticket.get_or_insert_with(|| {
            state.next_ticket += 1;
            state.next_ticket
        });
        match state.waiting.get_mut(&(this.due, ticket)) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                state.waiting.insert((this.due, ticket), cx.waker().clone());
            }
        }
        if state.armed_for.is_none_or(|armed| this.due < armed) {
            // Set here, so that the sleeps after this one with the same deadline (a grid
            // point's other loops) do not wake the driver again.
            state.armed_for = Some(this.due);
            if !state.driver_started {
                state.driver_started = true;
                drop(state);
                tokio::spawn(drive(this.shared.clone()));
            } else {
                drop(state);
                this.shared.rearm.notify_one();
            }
        }
        Poll::Pending
    }
}

impl Drop for GridSleep {
    fn drop(&mut self) {
        // A cancelled wait leaves the map; the driver's deadline may then be early, which
        // costs one wake-up that finds nothing due.
        if let Some(ticket) = self.ticket.take() {
            lock(&self.shared).waiting.remove(&(self.due, ticket));
        }
    }
}

/// The driver: wakes every sleep that is due, then sleeps until the earliest left, or until
/// told of an earlier one.
async fn drive(shared: Arc<Shared>) {
    let mut timer = FineTimer::new();
    loop {
        let mut due_now = Vec::new();
        let next = {
            let mut state = lock(&shared);
            if state.closed {
                return;
            }
            let now = Instant::now();
            while let Some(entry) = state.waiting.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due_now.push(entry.remove());
            }
            let next = state.waiting.first_key_value().map(|(k, _)| k.0);
            state.armed_for = next;
            next
        };
        for waker in due_now {
            waker.wake();
        }
        // A notification between the unlock above and the wait below is kept by `Notify`
        // (it stores one permit), so an earlier deadline set meanwhile is never missed.
        match next {
            Some(at) => {
                tokio::select! {
                    () = timer.sleep_exact(at) => {}
                    () = shared.rearm.notified() => {}
                }
            }
            None => shared.rearm.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every sleep ends at or after its deadline, each in the order of its deadline, whatever
    /// the order they were started in.
    #[tokio::test(flavor = "current_thread")]
    async fn sleeps_end_at_their_deadlines_in_order() {
        let clock = GridClock::new();
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for ms in [60u64, 20, 40, 20, 0] {
            let sleep = clock.sleep_until(start + Duration::from_millis(ms));
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                sleep.await;
                let ended = start.elapsed();
                assert!(
                    ended >= Duration::from_millis(ms),
                    "{ms} ms ended at {ended:?}"
                );
                order.lock().unwrap().push(ms);
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("a sleep was never woken")
                .unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 20, 20, 40, 60]);
    }

    /// A sleep started after a later one is waiting still ends on time: the driver is told of
    /// the earlier deadline.
    #[tokio::test(flavor = "current_thread")]
    async fn an_earlier_deadline_rearms_the_driver() {
        let clock = GridClock::new();
        let start = Instant::now();
        let late = tokio::spawn(clock.sleep_until(start + Duration::from_secs(30)));
        tokio::task::yield_now().await;
        tokio::time::timeout(
            Duration::from_secs(10),
            clock.sleep_until(start + Duration::from_millis(30)),
        )
        .await
        .expect("the early sleep was never woken");
        let ended = start.elapsed();
        assert!(ended >= Duration::from_millis(30));
        assert!(
            ended < Duration::from_secs(10),
            "the early sleep waited for the late one: {ended:?}"
        );
        assert!(!late.is_finished());
        late.abort();
    }

    /// A cancelled sleep leaves the clock's map, and the sleeps after it still end.
    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_sleep_is_forgotten() {
        let clock = GridClock::new();
        let start = Instant::now();
        let cancelled = tokio::time::timeout(
            Duration::from_millis(10),
            clock.sleep_until(start + Duration::from_secs(30)),
        )
        .await;
        assert!(cancelled.is_err());
        assert!(lock(&clock.owner.shared).waiting.is_empty());
        tokio::time::timeout(
            Duration::from_secs(10),
            clock.sleep_until(start + Duration::from_millis(40)),
        )
        .await
        .expect("the sleep after the cancelled one was never woken");
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    /// Dropping the clock ends its driver task.
    #[tokio::test(flavor = "current_thread")]
    async fn the_driver_ends_with_the_clock() {
        let clock = GridClock::new();
        tokio::time::timeout(
            Duration::from_secs(10),
            clock.sleep_until(Instant::now() + Duration::from_millis(5)),
        )
        .await
        .expect("the sleep was never woken");
        let shared = clock.owner.shared.clone();
        assert_eq!(Arc::strong_count(&shared), 3, "clock, driver, this test");
        drop(clock);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&shared) > 1 {
            assert!(Instant::now() < deadline, "the driver is still running");
            tokio::task::yield_now().await;
        }
    }
}
