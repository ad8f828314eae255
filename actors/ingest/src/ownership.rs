//! Stream ownership on a node: the leases it holds, renewed every heartbeat with compare-and-set,
//! and the self-fencing guard each stream actor publishes under. A lease that could not be
//! renewed stops its stream's publishing `lease_margin_ms` before another node may take it
//! ([`LeaseGuard`]), and one taken over by another node stops the stream at once.

use crate::placement::{Holder, Member, Plan};
use sightline_bus::{Bus, BusError, Cluster, Held, KvMirror, Renewal};
use sightline_settings::ClusterConfig;
use sightline_wire::{Lease, NodeInfo, now_ms};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the node announces about its ingest work, shared between the stream supervisor (which
/// writes it) and the node's heartbeat (which publishes it).
#[derive(Debug)]
pub struct Presence {
    pub id: String,
    pub max_streams: u32,
    /// Handing every stream over; taking none.
    pub draining: AtomicBool,
    /// Streams whose lease this node holds.
    pub owned: Mutex<Vec<String>>,
}

impl Presence {
    pub fn new(id: String, max_streams: u32) -> Arc<Self> {
        Arc::new(Self { id, max_streams, draining: AtomicBool::new(false), owned: Mutex::new(Vec::new()) })
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn owned(&self) -> Vec<String> {
        self.owned.lock().unwrap().clone()
    }
}

/// Whether a stream actor may still publish: true until `lease_ttl − lease_margin` after the
/// last renewal NATS confirmed (measured on the monotonic clock, which keeps running while a
/// process is stopped), and false at once when the lease is lost or given up.
#[derive(Debug)]
pub struct LeaseGuard {
    pub token: u64,
    base: Instant,
    /// Milliseconds after `base` until which publishing is allowed.
    until_ms: AtomicU64,
    /// The lease is gone for good (taken over, released): what is left is dropped.
    revoked: AtomicBool,
}

impl LeaseGuard {
    pub fn new(token: u64, valid_for: Duration) -> Arc<Self> {
        let g = Self {
            token,
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            revoked: AtomicBool::new(false),
        };
        g.extend(g.base, valid_for);
        Arc::new(g)
    }

    /// A guard that never lapses, for a stream run without leases (tools, benchmarks).
    pub fn unfenced() -> Arc<Self> {
        Arc::new(Self {
            token: 0,
            base: Instant::now(),
            until_ms: AtomicU64::new(u64::MAX),
            revoked: AtomicBool::new(false),
        })
    }

    pub fn valid(&self) -> bool {
        !self.revoked() && (self.base.elapsed().as_millis() as u64) < self.until_ms.load(Ordering::Relaxed)
    }

    /// Lost or given up (not merely unconfirmed, as while NATS elects a new leader).
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }

    /// A renewal sent at `sent` was confirmed: valid until `sent + valid_for`.
    pub fn extend(&self, sent: Instant, valid_for: Duration) {
        let until = (sent.saturating_duration_since(self.base) + valid_for).as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
        self.until_ms.store(0, Ordering::Relaxed);
    }
}

/// The leases this node holds and what it knows of the others'.
pub struct Ownership {
    pub cfg: ClusterConfig,
    pub presence: Arc<Presence>,
    cluster: Cluster,
    leases: KvMirror<Lease>,
    nodes: KvMirror<NodeInfo>,
    held: HashMap<String, (Held, Arc<LeaseGuard>)>,
    /// When each registered stream was first seen free, for the overdue rule.
    free_since: HashMap<String, Instant>,
    last_rebalance: Instant,
    /// When a lease operation last went unanswered (a NATS server lost, a leader being elected).
    last_failure: Option<Instant>,
}

impl Ownership {
    pub async fn start(bus: &Bus, cfg: ClusterConfig, presence: Arc<Presence>) -> Result<Self, BusError> {
        let cluster = Cluster::open(bus).await?;
        let leases = KvMirror::start(&cluster.leases).await?;
        let nodes = KvMirror::start(&cluster.nodes).await?;
        Ok(Self {
            cfg,
            presence,
            cluster,
            leases,
            nodes,
            held: HashMap::new(),
            free_since: HashMap::new(),
            last_rebalance: Instant::now(),
            last_failure: None,
        })
    }

    /// Whether another node's lease may be taken: expired, and by a heartbeat more, so that an
    /// owner that could not renew while NATS elected a new leader for the leases bucket (every
    /// node waits the same) renews first when the bucket answers again.
    ///
    /// And only once the leases bucket has answered this node for two heartbeats: an election
    /// makes every lease look lapsed when it ends, and the owners, retrying every 250 ms, renew
    /// first.
    fn lapsed(&self, lease: &Lease, now_ms: i64) -> bool {
        let heartbeat = Duration::from_millis(self.cfg.heartbeat_ms);
        let settled = self.last_failure.is_none_or(|t| t.elapsed() > 2 * heartbeat);
        settled && lease.expired(now_ms - self.cfg.heartbeat_ms as i64)
    }

    fn valid_for(&self) -> Duration {
        Duration::from_millis(self.cfg.lease_ttl_ms - self.cfg.lease_margin_ms)
    }

    pub fn guard(&self, stream: &str) -> Option<Arc<LeaseGuard>> {
        self.held.get(stream).map(|(_, g)| g.clone())
    }

    pub fn holds(&self, stream: &str) -> bool {
        self.held.contains_key(stream)
    }

    fn publish_owned(&self) {
        let mut owned: Vec<String> = self.held.keys().cloned().collect();
        owned.sort();
        *self.presence.owned.lock().unwrap() = owned;
    }

    /// Renews every held lease. Returns the streams whose lease another node has now, and
    /// whether some renewal went unanswered (worth trying again soon).
    pub async fn renew(&mut self) -> (Vec<String>, bool) {
        let mut lost = Vec::new();
        let mut unsure = false;
        let me = self.presence.id.clone();
        for (stream, (held, guard)) in self.held.iter_mut() {
            let sent = Instant::now();
            match self.cluster.renew(held, &me, self.cfg.lease_ttl_ms).await {
                Renewal::Renewed(rev) => {
                    held.revision = rev;
                    guard.extend(
                        sent,
                        Duration::from_millis(self.cfg.lease_ttl_ms - self.cfg.lease_margin_ms),
                    );
                }
                Renewal::Lost => {
                    guard.revoke();
                    lost.push(stream.clone());
                }
                Renewal::Unknown(e) => {
                    unsure = true;
                    self.last_failure = Some(Instant::now());
                    tracing::warn!(%stream, error = %e, valid = guard.valid(), "cannot renew the stream's lease");
                }
            }
        }
        for s in &lost {
            self.held.remove(s);
            tracing::warn!(stream = %s, "stream lease lost to another node; stopping it here");
        }
        self.publish_owned();
        (lost, unsure)
    }

    /// Decides what to take and hand over among `streams` (registered, unpaused).
    pub fn plan(&mut self, streams: &BTreeSet<String>) -> Plan {
        let now = now_ms();
        let me = self.presence.id.clone();
        let mut members: Vec<Member> = self
            .nodes
            .all()
            .into_values()
            .map(|(n, _)| n)
            .filter(|n| n.alive(now) && n.ingests() && n.id != me)
            .map(|n| Member { id: n.id, capacity: n.max_streams, draining: n.draining })
            .collect();
        members.push(Member {
            id: me.clone(),
            capacity: self.presence.max_streams,
            draining: self.presence.draining(),
        });
        let mut view = BTreeMap::new();
        for s in streams {
            let holder = if self.held.contains_key(s) {
                Holder::Node(me.clone())
            } else {
                match self.leases.get(s) {
                    // Ours from an earlier life of this node id: free for us to take back.
                    Some((l, _)) if !self.lapsed(&l, now) && l.owner != me => Holder::Node(l.owner),
                    _ => Holder::Free,
                }
            };
            view.insert(s.clone(), holder);
        }
        let heartbeat = Duration::from_millis(self.cfg.heartbeat_ms);
        self.free_since.retain(|s, _| view.get(s) == Some(&Holder::Free));
        let mut overdue = BTreeSet::new();
        for (s, h) in &view {
            if *h == Holder::Free {
                let since = *self.free_since.entry(s.clone()).or_insert_with(Instant::now);
                if since.elapsed() > 3 * heartbeat {
                    overdue.insert(s.clone());
                }
            }
        }
        let may_rebalance =
            self.last_rebalance.elapsed() >= Duration::from_secs(self.cfg.rebalance_interval_s);
        let plan = crate::placement::plan(&me, &members, &view, &overdue, may_rebalance);
        if plan.hand_over.is_some() {
            self.last_rebalance = Instant::now();
        }
        plan
    }

    /// Takes the lease on `stream`; the guard to publish under, or None when another node was
    /// faster.
    pub async fn take(&mut self, stream: &str) -> Result<Option<Arc<LeaseGuard>>, BusError> {
        let now = now_ms();
        let expected = match self.leases.get(stream) {
            Some((l, rev)) if self.lapsed(&l, now) || l.owner == self.presence.id => Some(rev),
            Some(_) => return Ok(None),
            None => None,
        };
        let sent = Instant::now();
        let held = match self.cluster.take(stream, &self.presence.id, self.cfg.lease_ttl_ms, expected).await {
            Ok(held) => held,
            Err(e) => {
                self.last_failure = Some(Instant::now());
                return Err(e);
            }
        };
        let Some(held) = held else { return Ok(None) };
        let guard = LeaseGuard::new(held.token, Duration::ZERO);
        guard.extend(sent, self.valid_for());
        tracing::info!(%stream, token = held.token, "stream lease taken");
        self.held.insert(stream.to_string(), (held, guard.clone()));
        self.free_since.remove(stream);
        self.publish_owned();
        Ok(Some(guard))
    }

    /// Gives the lease on `stream` up (its actor is stopped first by the caller).
    pub async fn release(&mut self, stream: &str) {
        if let Some((held, guard)) = self.held.remove(stream) {
            guard.revoke();
            if let Err(e) = self.cluster.release(&held).await {
                tracing::warn!(%stream, error = %e, "cannot release the stream lease; it lapses by itself");
            }
            tracing::info!(%stream, "stream lease released");
        }
        self.publish_owned();
    }

    /// The stream was deleted: its lease goes too, whoever held it.
    pub async fn forget(&mut self, stream: &str) {
        if let Some((_, guard)) = self.held.remove(stream) {
            guard.revoke();
            let _ = self.cluster.forget(stream).await;
        }
        self.publish_owned();
    }

    pub fn held(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }
}

/// How long a drain may take before the node exits anyway (its leases then lapse by TTL).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_lapses_without_renewal_and_ends_for_good_when_revoked() {
        assert!(LeaseGuard::new(7, Duration::from_secs(5)).valid());
        let g = LeaseGuard::new(7, Duration::ZERO);
        assert!(!g.valid() && !g.revoked(), "lapsed, not lost: the pump waits");
        // A renewal confirmed now extends it from when it was sent.
        g.extend(Instant::now(), Duration::from_millis(500));
        assert!(g.valid());
        // An older confirmation never shortens it.
        g.extend(g.base, Duration::from_millis(1));
        assert!(g.valid());
        g.revoke();
        assert!(!g.valid() && g.revoked());
        g.extend(Instant::now(), Duration::from_secs(60));
        assert!(!g.valid(), "a lost lease stays lost");
        assert!(LeaseGuard::unfenced().valid());
    }
}
