//! Prompt reconciles of the policies the relay just stored dead letters for, so their counts,
//! last dead-letter time and DeadLettersAccumulating follow within seconds rather than at the
//! next resync. Coalesced: a policy receiving thousands of dead letters a second is reconciled
//! at most once per interval.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, stream};
use kube::{core::DeserializeGuard, runtime::reflector::ObjectRef};
use tokio::time::MissedTickBehavior;

use crate::api::DeadLetterPolicy;

/// Policies with dead letters stored since they were last woken.
#[derive(Clone, Default)]
pub struct NewDeadLetters {
    policies: Arc<Mutex<BTreeSet<String>>>,
}

impl NewDeadLetters {
    /// The relay stored a dead letter for `policy` (`<namespace>/<name>`).
    pub fn stored(&self, policy: &str) {
        self.policies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(policy.to_string());
    }

    fn take(&self) -> BTreeSet<String> {
        std::mem::take(
            &mut *self
                .policies
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Every `interval`, the policies that received dead letters meanwhile, each once.
    pub fn wakes(
        &self,
        interval: Duration,
    ) -> impl Stream<Item = ObjectRef<DeserializeGuard<DeadLetterPolicy>>> + Send + 'static {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let this = self.clone();
        let batches = stream::unfold((ticks, this), |(mut ticks, this)| async move {
            ticks.tick().await;
            let refs: Vec<_> = this.take().iter().filter_map(|p| policy_ref(p)).collect();
            Some((stream::iter(refs), (ticks, this)))
        });
        futures::StreamExt::flatten(batches)
    }
}

fn policy_ref(policy: &str) -> Option<ObjectRef<DeserializeGuard<DeadLetterPolicy>>> {
    let (namespace, name) = policy.split_once('/')?;
    Some(ObjectRef::new(name).within(namespace))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn many_dead_letters_wake_a_policy_once_per_interval() {
        let new = NewDeadLetters::default();
        let mut wakes = Box::pin(new.wakes(Duration::from_secs(2)));
        for _ in 0..1000 {
            new.stored("shop/payments");
        }
        new.stored("shop/orders");
        new.stored("not-a-policy-reference");
        let first: Vec<String> = vec![
            wakes.next().await.unwrap().name,
            wakes.next().await.unwrap().name,
        ];
        assert_eq!(first, ["orders", "payments"]);
        let quiet = tokio::time::timeout(Duration::from_secs(10), wakes.next()).await;
        assert!(quiet.is_err(), "nothing new, no wake: {quiet:?}");
        new.stored("shop/payments");
        let again = wakes.next().await.unwrap();
        assert_eq!(
            (again.name.as_str(), again.namespace.as_deref()),
            ("payments", Some("shop"))
        );
    }
}
