//! Time arithmetic that cannot panic. A deadline is an instant plus a duration that came, in
//! the end, from a unit file or a peer; `Instant + Duration` panics when the sum does not fit,
//! so every deadline is computed here, saturating at a point far enough away that nothing
//! waits for it.

use std::time::{Duration, Instant};

/// About thirty years: later than any deadline anyone waits for.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + d`, or, when that does not fit, a moment about thirty years after `at`.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// [`later`] for tokio's clock.
pub(crate) fn later_tokio(at: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// `d` from now: [`later`] of [`Instant::now`].
pub(crate) fn deadline(d: Duration) -> Instant {
    later(Instant::now(), d)
}

/// `d` from now on tokio's clock.
pub(crate) fn deadline_tokio(d: Duration) -> tokio::time::Instant {
    later_tokio(tokio::time::Instant::now(), d)
}

/// A number of seconds as a duration: negative or NaN is zero, too large is [`Duration::MAX`].
pub(crate) fn seconds(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = later(now, Duration::MAX);
        assert!(far >= now + Duration::from_secs(86_400 * 365 * 29));
        assert!(deadline_tokio(Duration::MAX) > tokio::time::Instant::now());
    }

    #[test]
    fn seconds_are_clamped() {
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(seconds(f64::INFINITY), Duration::MAX);
        assert_eq!(seconds(1.5), Duration::from_millis(1500));
    }
}
