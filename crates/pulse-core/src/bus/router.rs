//! Which subscriptions receive an event type, cached per type.
//!
//! Matching every pattern for every event would make publishing cost grow with the number
//! of subscriptions. Instead the first event of a type computes its route (the matching
//! subscriptions, in subscription order, and whether the type is memory-only) and caches
//! it; later events of that type take a read lock and clone one `Arc`. Subscribing or
//! unsubscribing clears the cache under the write lock, so an event published after
//! `subscribe` returns always sees the new subscription. The cache is bounded: when it
//! holds too many types (a publisher inventing types) it starts over.
//!
//! Group subscriptions are registered here too, so that shutdown and statistics see every
//! subscription, but never routed: their events come from the log.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::subscription::{SubShared, SubscriptionId};
use crate::pattern::Pattern;

/// The most event types whose routes are cached.
const MAX_CACHED_TYPES: usize = 4096;

/// Where events of one type go.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) subscriptions: Box<[Arc<SubShared>]>,
    /// Whether the type matches a memory-only pattern of the bus.
    pub(crate) memory_only: bool,
}

/// The subscriptions of a bus and the route cache.
#[derive(Debug)]
pub(crate) struct Router {
    memory_only: Box<[Pattern]>,
    table: RwLock<Table>,
}

#[derive(Debug, Default)]
struct Table {
    subscriptions: Vec<Arc<SubShared>>,
    cache: HashMap<Box<str>, Arc<Route>>,
}

impl Router {
    /// A router with no subscription; types matching `memory_only` are not persisted by
    /// default.
    pub(crate) fn new(memory_only: Vec<Pattern>) -> Self {
        Self {
            memory_only: memory_only.into(),
            table: RwLock::new(Table::default()),
        }
    }

    /// The route of `ty`, from the cache when possible.
    pub(crate) fn route(&self, ty: &str) -> Arc<Route> {
        if let Some(route) = self.table.read().cache.get(ty) {
            return Arc::clone(route);
        }
        let mut table = self.table.write();
        if let Some(route) = table.cache.get(ty) {
            return Arc::clone(route);
        }
        let route = Arc::new(Route {
            subscriptions: table
                .subscriptions
                .iter()
                .filter(|s| s.is_live() && s.pattern.matches(ty))
                .cloned()
                .collect(),
            memory_only: self.memory_only.iter().any(|p| p.matches(ty)),
        });
        if table.cache.len() >= MAX_CACHED_TYPES {
            table.cache.clear();
        }
        table.cache.insert(ty.into(), Arc::clone(&route));
        route
    }

    /// Adds a subscription; it receives every event routed from now on.
    pub(crate) fn insert(&self, subscription: Arc<SubShared>) {
        let mut table = self.table.write();
        table.subscriptions.push(subscription);
        table.cache.clear();
    }

    /// Removes a subscription; no event routed from now on reaches it.
    pub(crate) fn remove(&self, id: SubscriptionId) {
        let mut table = self.table.write();
        table.subscriptions.retain(|s| s.id != id);
        table.cache.clear();
    }

    /// Every subscription, live or group.
    pub(crate) fn subscriptions(&self) -> Vec<Arc<SubShared>> {
        self.table.read().subscriptions.clone()
    }

    /// How many types have a cached route.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.table.read().cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::options::OverflowPolicy;
    use tokio_util::sync::CancellationToken;

    fn sub(id: u64, pattern: &str) -> Arc<SubShared> {
        Arc::new(SubShared::new(
            SubscriptionId(id),
            pattern.into(),
            Pattern::parse(pattern).unwrap(),
            8,
            1,
            OverflowPolicy::Wait,
            CancellationToken::new(),
        ))
    }

    fn ids(route: &Route) -> Vec<u64> {
        route.subscriptions.iter().map(|s| s.id.0).collect()
    }

    #[test]
    fn routes_are_cached_and_invalidated() {
        let router = Router::new(vec![Pattern::parse("metrics.>").unwrap()]);
        router.insert(sub(1, "health.>"));
        router.insert(sub(2, "health.*.steps"));
        assert_eq!(ids(&router.route("health.reading.steps")), [1, 2]);
        assert_eq!(ids(&router.route("health.reading.heart_rate")), [1]);
        assert!(ids(&router.route("billing.paid")).is_empty());
        assert_eq!(router.cached(), 3);
        let cached = router.route("health.reading.steps");
        assert!(Arc::ptr_eq(&cached, &router.route("health.reading.steps")));

        router.insert(Arc::new(SubShared::for_group(
            SubscriptionId(9),
            "g".into(),
            Pattern::parse(">").unwrap(),
            CancellationToken::new(),
        )));
        router.insert(sub(3, "health.reading.steps"));
        assert_eq!(router.cached(), 0);
        assert_eq!(ids(&router.route("health.reading.steps")), [1, 2, 3]);
        router.remove(SubscriptionId(1));
        assert_eq!(ids(&router.route("health.reading.steps")), [2, 3]);
        assert!(router.route("metrics.cpu").memory_only);
        assert!(!router.route("health.reading.steps").memory_only);
    }

    #[test]
    fn the_cache_is_bounded() {
        let router = Router::new(Vec::new());
        router.insert(sub(1, ">"));
        for i in 0..MAX_CACHED_TYPES + 10 {
            assert_eq!(ids(&router.route(&format!("t.n{i}"))), [1]);
        }
        assert!(router.cached() <= MAX_CACHED_TYPES);
    }
}
