//! Placeholder pools: keep `min_idle` warm workers per (language, version), plus what waiting
//! apps need, never more than `max` in all, never more provisions than are missing, and back
//! off when workers keep failing.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{AKey, Runtime, Timer, WKey};
use crate::config::PoolSpec;
use crate::error::PoolError;
use crate::ids::PoolKey;

/// A pool's live state.
#[derive(Debug)]
pub(super) struct Pool {
    pub(super) spec: PoolSpec,
    /// Idle placeholders, oldest key first.
    pub(super) idle: BTreeSet<WKey>,
    /// Workers of this pool in any state.
    pub(super) members: u32,
    /// Provisions asked for whose worker has not connected.
    pub(super) provisioning: u32,
    /// Workers in their init handshake.
    pub(super) initializing: u32,
    /// Idle placeholders the runtime provisioned (the ones it may release).
    pub(super) idle_provisioned: u32,
    /// Consecutive failures (provisions that never connected, workers lost early).
    pub(super) failures: u32,
    /// No provisioning before this.
    pub(super) backoff_until: Option<Instant>,
    /// Apps waiting for a placeholder, first come first served. May hold stale entries; each
    /// is checked against the app's current shortfall when popped.
    pub(super) waiting: VecDeque<AKey>,
}

impl Runtime {
    /// Adds a pool or changes an existing one's bounds, token and environment.
    pub fn upsert_pool(&mut self, now: Instant, spec: PoolSpec) -> Result<(), PoolError> {
        self.advance(now);
        if spec.max == 0 || spec.min_idle > spec.max {
            return Err(PoolError::InvalidBounds {
                pool: spec.key.to_string(),
                min_idle: spec.min_idle,
                max: spec.max,
            });
        }
        let p = match self.pool_index(&spec.key) {
            Some(p) => {
                self.pools[p].spec = spec;
                p
            }
            None => {
                self.pools.push(Pool {
                    spec,
                    idle: BTreeSet::new(),
                    members: 0,
                    provisioning: 0,
                    initializing: 0,
                    idle_provisioned: 0,
                    failures: 0,
                    backoff_until: None,
                    waiting: VecDeque::new(),
                });
                self.pools.len() - 1
            }
        };
        self.reconcile_pool(p);
        Ok(())
    }

    pub(super) fn pool_index(&self, key: &PoolKey) -> Option<usize> {
        self.pools.iter().position(|p| &p.spec.key == key)
    }

    /// The pool serving an app: exact version first, then the language's version-less pool.
    pub(super) fn pool_for(&self, language: &str, version: &str) -> Option<usize> {
        let exact =
            self.pools.iter().position(|p| p.spec.key.language == language && p.spec.key.version == version);
        exact.or_else(|| {
            self.pools.iter().position(|p| p.spec.key.language == language && p.spec.key.version.is_empty())
        })
    }

    /// Records a failure and returns the backoff now in force.
    pub(super) fn pool_failure(&mut self, p: usize) -> Duration {
        let pool = &mut self.pools[p];
        pool.failures = pool.failures.saturating_add(1);
        let delay = self.cfg.provision_backoff.delay(pool.failures);
        let until = self.now + delay;
        pool.backoff_until = Some(until);
        self.timers.set(Timer::Pool(p), until);
        delay
    }

    /// Provisions what is missing and releases what is extra.
    pub(super) fn reconcile_pool(&mut self, p: usize) {
        if self.shutting_down {
            return;
        }
        let demand = self.pool_demand(p);
        let pool = &self.pools[p];
        let have = pool.idle.len() as u32 + pool.provisioning + pool.initializing;
        let want = pool.spec.min_idle.saturating_add(demand);
        if have < want && pool.spec.provisioned {
            if pool.backoff_until.is_some_and(|t| t > self.now) {
                return; // the Pool timer reconciles again when the backoff ends
            }
            let room = pool.spec.max.saturating_sub(pool.members + pool.provisioning);
            for _ in 0..(want - have).min(room) {
                self.provision(p);
            }
        } else if have > want && pool.provisioning == 0 && pool.idle_provisioned > 0 {
            // Extra idle placeholders (the pool shrank, or demand went away): release the newest
            // of those the runtime provisioned (joined workers come and go on their own).
            let mut extra = (have - want).min(pool.idle_provisioned);
            let mut victims = Vec::new();
            for w in pool.idle.iter().rev() {
                if extra == 0 {
                    break;
                }
                if self.workers[w].provisioned {
                    victims.push(*w);
                    extra -= 1;
                }
            }
            for w in victims {
                self.release(w, "more placeholders than the pool needs");
            }
        }
    }

    /// Workers that waiting apps still lack.
    fn pool_demand(&self, p: usize) -> u32 {
        let mut seen = BTreeSet::new();
        let mut demand = 0u32;
        for a in &self.pools[p].waiting {
            if seen.insert(*a)
                && let Some(app) = self.apps.get(a)
            {
                demand = demand.saturating_add(self.app_shortfall(app));
            }
        }
        demand
    }

    /// An idle placeholder is available: give it to the first app waiting for one.
    pub(super) fn offer_placeholder(&mut self, w: WKey) {
        let p = self.workers[&w].pool;
        while let Some(a) = self.pools[p].waiting.pop_front() {
            let Some(app) = self.apps.get(&a) else { continue };
            if self.app_shortfall(app) == 0 {
                continue;
            }
            self.start_specialization(w, a);
            // Still short? Stay at the front of the line for the next placeholder.
            if self.apps.get(&a).is_some_and(|app| self.app_shortfall(app) > 0) {
                self.pools[p].waiting.push_front(a);
            }
            break;
        }
        self.reconcile_pool(p);
    }

    /// Takes the oldest idle placeholder of a pool.
    pub(super) fn take_placeholder(&mut self, p: usize) -> Option<WKey> {
        self.pools[p].idle.pop_first()
    }
}
