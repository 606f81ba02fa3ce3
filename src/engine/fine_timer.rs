//! Sleeps shorter than a millisecond, for the fast phase of a readiness poll.
//!
//! tokio's timer wheel counts whole milliseconds, and its driver parks in `epoll_wait`, whose
//! timeout is in milliseconds too: a sleep of 250 µs lasts until the next millisecond tick, up
//! to 1–2 ms. A readiness poll that wants to notice a listener within a fraction of a
//! millisecond needs a finer clock. On Linux a timerfd (nanosecond resolution,
//! <https://man7.org/linux/man-pages/man2/timerfd_create.2.html>) registered with the runtime
//! wakes it on time. One per poll loop, armed again for each attempt: two system calls per
//! wait (arm, read) and no new registration.
//!
//! The same timer serves [`super::grid_clock`] for waits of any length
//! ([`FineTimer::sleep_exact`]): one wake-up at the deadline.
//!
//! Elsewhere, or when the kernel refuses a timerfd, the tokio sleep is used: the poll is then
//! as fine as the runtime's clock, never wrong.

use std::time::Duration;

use tokio::time::Instant;

/// Waits longer than this go to tokio's timer: a millisecond more or less is noise there.
const FINE_BELOW: Duration = Duration::from_millis(2);

/// A timer for sleeps of less than a couple of milliseconds.
pub(crate) struct FineTimer {
    #[cfg(target_os = "linux")]
    fd: Option<tokio::io::unix::AsyncFd<linux::Timer>>,
}

impl FineTimer {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            fd: linux::Timer::new().and_then(|t| {
                // SAFETY: the descriptor is the TimerFd's own (an OwnedFd it holds, never
                // replaced or closed before it is dropped), so it stays open and the same for
                // as long as the AsyncFd that owns the Timer lives, and `as_raw_fd` always
                // returns it.
                unsafe { tokio::io::unix::AsyncFd::register(t) }.ok()
            }),
        }
    }

    /// Sleeps until `due` (at once if it has passed): on the timerfd when it is less than
    /// `FINE_BELOW` away, else on the runtime's clock.
    pub(crate) async fn sleep_until(&mut self, due: Instant) {
        self.sleep(due, FINE_BELOW).await;
    }

    /// Sleeps until `due` on the timerfd however far it is, with one wake-up at the deadline
    /// (tokio's wheel wakes its driver once per level a long sleep cascades through). For
    /// [`super::grid_clock`], whose one timer serves every liveness loop.
    pub(crate) async fn sleep_exact(&mut self, due: Instant) {
        self.sleep(due, Duration::MAX).await;
    }

    /// Sleeps until `due`, on the timerfd when it is less than `timerfd_below` away and the
    /// timerfd works, else on tokio's sleep.
    async fn sleep(&mut self, due: Instant, timerfd_below: Duration) {
        let now = Instant::now();
        let Some(left) = due.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            return;
        };
        #[cfg(target_os = "linux")]
        if left < timerfd_below
            && let Some(fd) = &self.fd
            && linux::sleep(fd, left).await
        {
            return;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (left, timerfd_below);
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::unix::AsyncFd;

    /// A non-blocking monotonic timerfd (tokio's `AsyncFd` wants `AsRawFd`).
    pub(super) struct Timer(TimerFd);

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    impl Timer {
        pub(super) fn new() -> Option<Self> {
            TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .ok()
            .map(Self)
        }
    }

    /// Arms the timer for `left` and waits until it fires; false when the timer could not be
    /// used (the caller falls back to tokio's sleep).
    pub(super) async fn sleep(fd: &AsyncFd<Timer>, left: Duration) -> bool {
        let timer = &fd.get_ref().0;
        if timer
            .set(
                Expiration::OneShot(TimeSpec::from_duration(left)),
                TimerSetTimeFlags::empty(),
            )
            .is_err()
        {
            return false;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return false;
            };
            // The expiration count: 8 bytes once it fired, EAGAIN before (a readiness left
            // from an earlier arming, which this read clears).
            let mut count = [0u8; 8];
            match ready.try_io(|t| {
                nix::unistd::read(t.get_ref().0.as_fd(), &mut count).map_err(std::io::Error::from)
            }) {
                Ok(Ok(_)) => {
                    // The read took the only expiration of a one-shot timer: the descriptor
                    // is not readable until it is armed again, so the readiness is cleared
                    // here rather than by a read that fails at the next wait.
                    ready.clear_ready();
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sleep lasts at least what was asked, and a sub-millisecond one well under tokio's
    /// millisecond tick on Linux (not timed tightly: only that it is not rounded to 1 ms ten
    /// times over).
    #[tokio::test(flavor = "current_thread")]
    async fn a_short_sleep_lasts_at_least_its_time() {
        let mut t = FineTimer::new();
        #[cfg(target_os = "linux")]
        assert!(t.fd.is_some(), "no timerfd");
        for _ in 0..20 {
            let start = Instant::now();
            t.sleep_until(start + Duration::from_micros(200)).await;
            assert!(start.elapsed() >= Duration::from_micros(200));
        }
        // Past deadlines return at once, longer ones through tokio's timer.
        t.sleep_until(Instant::now() - Duration::from_millis(1))
            .await;
        let start = Instant::now();
        t.sleep_until(start + Duration::from_millis(5)).await;
        assert!(start.elapsed() >= Duration::from_millis(5));
    }
}
