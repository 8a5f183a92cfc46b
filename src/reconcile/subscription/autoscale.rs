//! How many worker pods a Subscription with `worker.autoscaling` wants. Pure: the policy, the
//! consumer's lag and the time in, a pod count and the sentence explaining it out.
//!
//! Each lag reading recommends `clamp(ceil(lag / lagPerReplica), min, max)` pods. The pod count
//! is the highest recommendation within the stabilization window: a rise takes effect at the
//! next reading, a fall only once every higher recommendation has aged out of the window, so
//! the count follows bursts at once and does not flap in the lulls between them (the rule the
//! Kubernetes HorizontalPodAutoscaler uses for scaling down).

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use crate::api::subscription::WorkerAutoscaling;

/// The autoscaling settings of one Subscription, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub min: i32,
    pub max: i32,
    pub lag_per_replica: i64,
    pub window: Duration,
}

impl Policy {
    /// The policy, or the message naming the field that cannot be used.
    pub fn of(spec: &WorkerAutoscaling) -> Result<Self, String> {
        let window = spec
            .stabilization_window
            .parse()
            .map_err(|e| format!("spec.worker.autoscaling.stabilizationWindow: {e}"))?;
        if spec.min_replicas > spec.max_replicas {
            return Err(format!(
                "spec.worker.autoscaling.minReplicas ({}) exceeds maxReplicas ({})",
                spec.min_replicas, spec.max_replicas
            ));
        }
        Ok(Self {
            min: spec.min_replicas.max(0),
            max: spec.max_replicas,
            lag_per_replica: spec.lag_per_replica.max(1),
            window,
        })
    }

    /// Pods one lag reading asks for, and why.
    pub fn recommend(&self, lag: i64) -> (i32, String) {
        let lag = lag.max(0);
        let needed = lag
            .unsigned_abs()
            .div_ceil(self.lag_per_replica.unsigned_abs());
        let needed = i32::try_from(needed).unwrap_or(i32::MAX);
        let pods = needed.clamp(self.min, self.max);
        let mut why = format!(
            "lag {lag} needs {needed} pod{} at lagPerReplica {}",
            plural(needed),
            self.lag_per_replica
        );
        if needed > self.max {
            why.push_str(&format!(", capped at maxReplicas {}", self.max));
        } else if needed < self.min {
            why.push_str(&format!(", raised to minReplicas {}", self.min));
        }
        (pods, why)
    }
}

fn plural(n: i32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A change of the pod count the autoscaler decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub from: i32,
    pub to: i32,
    pub reason: String,
}

/// What the autoscaler remembers of one Subscription between lag readings.
#[derive(Clone, Debug)]
pub struct ScaleState {
    /// Recommendations within the stabilization window, oldest first.
    recent: VecDeque<(Instant, i32)>,
    /// The pod count in force.
    pub replicas: i32,
    /// Why `replicas` is what it is, for the status. Set by decisions only, so the status does
    /// not change with every reading.
    pub reason: String,
    /// Whether `replicas` was decided from a lag reading (not only carried over).
    pub decided: bool,
}

impl ScaleState {
    /// Starts from the pod count found (the Deployment's, as the status last reported it),
    /// counted as recommended now: a new leader does not scale down before a whole window of
    /// its own readings says so.
    pub fn carried_over(policy: &Policy, replicas: Option<i32>, now: Instant) -> Self {
        let replicas = replicas.unwrap_or(policy.min).clamp(policy.min, policy.max);
        Self {
            recent: VecDeque::from([(now, replicas)]),
            replicas,
            reason: format!(
                "{replicas} pod{} until the first lag reading",
                plural(replicas)
            ),
            decided: false,
        }
    }

    /// Takes one lag reading; returns the decision when the pod count changes, and after the
    /// first reading (which replaces the carried-over explanation, `from == to` if it holds).
    pub fn observe(&mut self, policy: &Policy, lag: i64, now: Instant) -> Option<Decision> {
        let (recommended, why) = policy.recommend(lag);
        while let Some(&(at, _)) = self.recent.front() {
            if now.saturating_duration_since(at) > policy.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back((now, recommended));
        let stabilized = self
            .recent
            .iter()
            .map(|&(_, pods)| pods)
            .max()
            .unwrap_or(recommended)
            .clamp(policy.min, policy.max);
        let from = self.replicas;
        if stabilized == from && self.decided {
            return None;
        }
        self.reason = if stabilized > recommended {
            format!(
                "{why}; holding {stabilized} pod{} for the {:?} stabilization window",
                plural(stabilized),
                policy.window
            )
        } else {
            why
        };
        self.decided = true;
        self.replicas = stabilized;
        Some(Decision {
            from,
            to: stabilized,
            reason: self.reason.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GoDuration;

    fn policy(min: i32, max: i32, window_secs: u64) -> Policy {
        Policy {
            min,
            max,
            lag_per_replica: 100,
            window: Duration::from_secs(window_secs),
        }
    }

    #[test]
    fn recommendation_is_lag_over_target_rounded_up_within_bounds() {
        let p = policy(0, 10, 60);
        assert_eq!(p.recommend(0).0, 0);
        assert_eq!(p.recommend(1).0, 1);
        assert_eq!(p.recommend(100).0, 1);
        assert_eq!(p.recommend(101).0, 2);
        assert_eq!(p.recommend(450).0, 5);
        let (pods, why) = p.recommend(5_000);
        assert_eq!(pods, 10);
        assert_eq!(
            why,
            "lag 5000 needs 50 pods at lagPerReplica 100, capped at maxReplicas 10"
        );
        let (pods, why) = policy(2, 10, 60).recommend(0);
        assert_eq!(pods, 2);
        assert_eq!(
            why,
            "lag 0 needs 0 pods at lagPerReplica 100, raised to minReplicas 2"
        );
        assert_eq!(p.recommend(-5).0, 0, "a negative reading counts as none");
        assert_eq!(p.recommend(i64::MAX).0, 10);
    }

    #[test]
    fn scales_up_at_once_and_down_only_after_the_window() {
        let p = policy(0, 10, 30);
        let t0 = Instant::now();
        let mut state = ScaleState::carried_over(&p, Some(0), t0);
        let up = state.observe(&p, 450, t0).expect("scale from zero at once");
        assert_eq!((up.from, up.to), (0, 5));
        // Drained: the count holds while the burst is within the window.
        for secs in [2, 10, 29] {
            assert_eq!(state.observe(&p, 0, t0 + Duration::from_secs(secs)), None);
            assert_eq!(state.replicas, 5);
            assert_eq!(
                state.reason, up.reason,
                "the reason is that of the decision"
            );
        }
        let down = state
            .observe(&p, 0, t0 + Duration::from_secs(31))
            .expect("down after the window");
        assert_eq!((down.from, down.to), (5, 0));
        assert_eq!(down.reason, "lag 0 needs 0 pods at lagPerReplica 100");
    }

    #[test]
    fn lulls_between_bursts_do_not_flap() {
        let p = policy(1, 10, 60);
        let t0 = Instant::now();
        let mut state = ScaleState::carried_over(&p, None, t0);
        state.observe(&p, 0, t0);
        let mut changes = Vec::new();
        // A burst every 20 s, drained in between, for five minutes.
        for second in (0..300).step_by(2) {
            let lag = if second % 20 < 4 { 800 } else { 0 };
            if let Some(d) = state.observe(&p, lag, t0 + Duration::from_secs(second)) {
                changes.push((second, d.to));
            }
        }
        assert_eq!(
            changes,
            [(0, 8)],
            "one rise, no fall while bursts keep coming"
        );
    }

    #[test]
    fn a_new_leader_keeps_the_count_found_for_a_window() {
        let p = policy(0, 10, 30);
        let t0 = Instant::now();
        let mut state = ScaleState::carried_over(&p, Some(4), t0);
        assert_eq!(state.replicas, 4);
        let first = state.observe(&p, 0, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!((first.from, first.to), (4, 4), "explained, not changed");
        assert_eq!(state.observe(&p, 0, t0 + Duration::from_secs(2)), None);
        assert_eq!(state.replicas, 4);
        assert!(state.reason.contains("holding 4 pods"), "{}", state.reason);
        let down = state.observe(&p, 0, t0 + Duration::from_secs(31)).unwrap();
        assert_eq!(down.to, 0);
    }

    #[test]
    fn carried_over_counts_are_clamped_to_the_current_bounds() {
        let p = policy(2, 5, 30);
        let t0 = Instant::now();
        assert_eq!(ScaleState::carried_over(&p, Some(9), t0).replicas, 5);
        assert_eq!(ScaleState::carried_over(&p, Some(0), t0).replicas, 2);
        assert_eq!(ScaleState::carried_over(&p, None, t0).replicas, 2);
    }

    #[test]
    fn the_policy_comes_from_the_spec() {
        let spec = WorkerAutoscaling {
            min_replicas: 0,
            max_replicas: 4,
            lag_per_replica: 50,
            stabilization_window: GoDuration::new("90s"),
        };
        assert_eq!(
            Policy::of(&spec).unwrap(),
            Policy {
                min: 0,
                max: 4,
                lag_per_replica: 50,
                window: Duration::from_secs(90)
            }
        );
        let bad = WorkerAutoscaling {
            stabilization_window: GoDuration::new("soon"),
            ..spec.clone()
        };
        assert!(
            Policy::of(&bad)
                .unwrap_err()
                .starts_with("spec.worker.autoscaling.stabilizationWindow: ")
        );
        let inverted = WorkerAutoscaling {
            min_replicas: 5,
            ..spec
        };
        assert!(
            Policy::of(&inverted)
                .unwrap_err()
                .contains("exceeds maxReplicas")
        );
    }
}
