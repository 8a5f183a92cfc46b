//! Keeps a repeating failure from flooding the log: the first occurrence is logged, later ones at
//! most once per interval together with how many were not.

use std::time::{Duration, Instant};

/// How often a repeating failure is logged at most.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence. `Some(n)` when it should be logged, `n` being the occurrences
    /// left unlogged since the last one that was.
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// Forgets the past, so that the next occurrence is logged at once.
    pub(super) fn reset(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_first_then_once_per_interval_with_the_count() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(30));
        assert_eq!(throttle.hit(start), Some(0));
        for s in 1..30 {
            assert_eq!(throttle.hit(start + Duration::from_secs(s)), None);
        }
        assert_eq!(throttle.hit(start + Duration::from_secs(30)), Some(29));
        assert_eq!(throttle.hit(start + Duration::from_secs(31)), None);
        throttle.reset();
        assert_eq!(throttle.hit(start + Duration::from_secs(32)), Some(0));
    }
}
