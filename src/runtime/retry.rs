//! Retry timing: exponential backoff with jitter per object, so a failing API server or broker is
//! not hit by every object at the same instant, and a persistent failure is retried ever less
//! often (up to a ceiling) instead of at a fixed rate.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// The shape of the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub initial: Duration,
    /// No delay grows past this.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry), given `jitter` in
    /// [0, 1): the exponential delay is halved and up to the other half is added at random
    /// ("equal jitter"), so delays keep growing on average and never drop below half.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponential = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(31)))
            .min(self.max);
        let half = exponential / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Consecutive failures per object, and the delays they earn.
#[derive(Debug)]
pub struct Retry {
    backoff: Backoff,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Retry {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
            let slot = attempts.entry(key.to_string()).or_default();
            let attempt = *slot;
            *slot = slot.saturating_add(1);
            attempt
        };
        self.backoff.delay(attempt, rand::random::<f64>())
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };

    #[test]
    fn delays_double_up_to_the_ceiling() {
        let at_most: Vec<_> = (0..9).map(|a| BACKOFF.delay(a, 0.999_999)).collect();
        let secs: Vec<u64> = at_most
            .iter()
            .map(|d| d.as_secs_f64().round() as u64)
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(
            BACKOFF.delay(u32::MAX, 0.999_999).as_secs_f64().round(),
            60.0
        );
    }

    #[test]
    fn jitter_spreads_each_delay_over_its_upper_half() {
        assert_eq!(BACKOFF.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(BACKOFF.delay(3, 0.5), Duration::from_secs(6));
        assert!(BACKOFF.delay(3, 0.999) < Duration::from_secs(8));
    }

    #[test]
    fn failures_grow_per_object_and_success_resets() {
        let retry = Retry::new(BACKOFF);
        let first = retry.failed("a");
        let second = retry.failed("a");
        let third = retry.failed("a");
        assert!(first <= Duration::from_secs(1));
        assert!(second >= Duration::from_secs(1) && second <= Duration::from_secs(2));
        assert!(third >= Duration::from_secs(2));
        assert!(
            retry.failed("b") <= Duration::from_secs(1),
            "objects back off independently"
        );
        retry.succeeded("a");
        assert!(retry.failed("a") <= Duration::from_secs(1));
    }
}
