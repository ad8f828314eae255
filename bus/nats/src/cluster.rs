//! Several nodes on one bus, on JetStream KV: the membership bucket every node announces itself
//! in, and the leases bucket by which exactly one ingest node runs each stream. A lease is taken
//! and renewed with compare-and-set on the entry's revision, so two nodes can never both believe
//! they took it; the revision at which it was taken is its fencing token ([`Fence`]).

use crate::connection::{Bus, BusError, js_err};
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sightline_wire::{Lease, NodeInfo};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A bucket's current entries, kept by a watch: (value, revision) by key.
pub struct KvMirror<T> {
    entries: Arc<RwLock<HashMap<String, (T, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for KvMirror<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: DeserializeOwned + Clone + Send + Sync + 'static> KvMirror<T> {
    /// Starts mirroring `store`; returns once the entries that existed at the start are in.
    pub async fn start(store: &kv::Store) -> Result<Self, BusError> {
        let entries: Arc<RwLock<HashMap<String, (T, u64)>>> = Default::default();
        let mut watch = store.watch_with_history(">").await.map_err(js_err("watch bucket"))?;
        // Everything stored before the watch: entries arrive until the newest (`delta` 0).
        let stored = store.status().await.map_err(js_err("bucket status"))?.info.state.messages;
        let apply = |map: &RwLock<HashMap<String, (T, u64)>>, e: kv::Entry| match e.operation {
            kv::Operation::Put => match serde_json::from_slice::<T>(&e.value) {
                Ok(v) => {
                    map.write().unwrap().insert(e.key, (v, e.revision));
                }
                Err(_) => tracing::warn!(key = %e.key, "unreadable bucket entry skipped"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                map.write().unwrap().remove(&e.key);
            }
        };
        let mut caught_up = stored == 0;
        while !caught_up {
            match tokio::time::timeout(std::time::Duration::from_secs(5), watch.next()).await {
                Ok(Some(Ok(e))) => {
                    caught_up = e.delta == 0;
                    apply(&entries, e);
                }
                // Purged history or a slow server: what arrived is what there is; the watch
                // below keeps filling in.
                _ => break,
            }
        }
        let map = entries.clone();
        let task = tokio::spawn(async move {
            while let Some(e) = watch.next().await {
                if let Ok(e) = e {
                    apply(&map, e);
                }
            }
        });
        Ok(Self { entries, task })
    }

    pub fn get(&self, key: &str) -> Option<(T, u64)> {
        self.entries.read().unwrap().get(key).cloned()
    }

    pub fn all(&self) -> HashMap<String, (T, u64)> {
        self.entries.read().unwrap().clone()
    }
}

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub stream: String,
    pub token: u64,
    /// The revision of the latest write (what the next renewal must match).
    pub revision: u64,
    pub acquired_ms: i64,
}

/// How a renewal went.
#[derive(Debug, PartialEq)]
pub enum Renewal {
    Renewed(u64),
    /// Another node took it (or it was released): stop at once.
    Lost,
    /// NATS did not answer; the lease stands until it lapses.
    Unknown(String),
}

#[derive(Clone)]
pub struct Cluster {
    pub nodes: kv::Store,
    pub leases: kv::Store,
}

fn json<T: Serialize>(v: &T) -> bytes::Bytes {
    serde_json::to_vec(v).expect("serialises").into()
}

impl Cluster {
    pub async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self {
            nodes: bus.kv(&bus.names.nodes_bucket()).await?,
            leases: bus.kv(&bus.names.leases_bucket()).await?,
        })
    }

    pub async fn announce(&self, node: &NodeInfo) -> Result<(), BusError> {
        self.nodes.put(&node.id, json(node)).await.map_err(js_err(format!("announce {}", node.id)))?;
        Ok(())
    }

    /// Leaves the membership (a clean exit; a dead node's entry lapses by age).
    pub async fn leave(&self, id: &str) -> Result<(), BusError> {
        self.nodes.delete(id).await.map_err(js_err(format!("leave {id}")))?;
        Ok(())
    }

    /// Every announced node, live or not (see [`NodeInfo::alive`]).
    pub async fn node_list(&self) -> Result<Vec<NodeInfo>, BusError> {
        let mut keys = self.nodes.keys().await.map_err(js_err("list nodes"))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            let Ok(k) = k else { continue };
            if let Ok(Some(v)) = self.nodes.get(&k).await
                && let Ok(n) = serde_json::from_slice::<NodeInfo>(&v)
            {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Takes the lease on `stream` for `owner` for `ttl_ms`: a fresh one when `expected` is None,
    /// else over the (lapsed or released) entry at revision `expected`. None when another node was
    /// faster.
    pub async fn take(
        &self,
        stream: &str,
        owner: &str,
        ttl_ms: u64,
        expected: Option<u64>,
    ) -> Result<Option<Held>, BusError> {
        let now = sightline_wire::now_ms();
        let mut lease =
            Lease { owner: owner.into(), token: 0, acquired_ms: now, expires_ms: now + ttl_ms as i64 };
        let taken = match expected {
            None => match self.leases.create(stream, json(&lease)).await {
                Ok(rev) => rev,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
                Err(e) => return Err(js_err(format!("take lease {stream}"))(e)),
            },
            Some(rev) => match self.leases.update(stream, json(&lease), rev).await {
                Ok(rev) => rev,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return Ok(None),
                Err(e) => return Err(js_err(format!("take lease {stream}"))(e)),
            },
        };
        // The taking write's revision is the token; every later write carries it.
        lease.token = taken;
        let mut held = Held { stream: stream.into(), token: taken, revision: taken, acquired_ms: now };
        match self.renew(&held, owner, ttl_ms).await {
            Renewal::Renewed(rev) => held.revision = rev,
            Renewal::Lost => return Ok(None),
            Renewal::Unknown(_) => {}
        }
        Ok(Some(held))
    }

    pub async fn renew(&self, held: &Held, owner: &str, ttl_ms: u64) -> Renewal {
        let now = sightline_wire::now_ms();
        let lease = Lease {
            owner: owner.into(),
            token: held.token,
            acquired_ms: held.acquired_ms,
            expires_ms: now + ttl_ms as i64,
        };
        match self.leases.update(&held.stream, json(&lease), held.revision).await {
            Ok(rev) => Renewal::Renewed(rev),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Renewal::Lost,
            Err(e) => Renewal::Unknown(e.to_string()),
        }
    }

    /// Gives the lease up (only if it is still ours), for another node to take at once.
    pub async fn release(&self, held: &Held) -> Result<(), BusError> {
        self.leases
            .delete_expect_revision(&held.stream, Some(held.revision))
            .await
            .map_err(js_err(format!("release lease {}", held.stream)))?;
        Ok(())
    }

    /// Drops the lease of a deleted stream, whoever held it.
    pub async fn forget(&self, stream: &str) -> Result<(), BusError> {
        self.leases.purge(stream).await.map_err(js_err(format!("forget lease {stream}")))?;
        Ok(())
    }
}

/// Downstream fencing: refuses work published by an ingest node after its lease on the stream
/// was taken over by another (a node that was partitioned or stopped, and woke up still
/// publishing). Work carries the token of the lease it was published under
/// ([`sightline_wire::FrameMeta::lease`]).
#[derive(Clone)]
pub struct Fence {
    leases: Arc<KvMirror<Lease>>,
}

impl Fence {
    pub async fn start(cluster: &Cluster) -> Result<Self, BusError> {
        Ok(Self { leases: Arc::new(KvMirror::start(&cluster.leases).await?) })
    }

    /// Whether work of `stream` published at `published_ms` (the server's time) under lease
    /// `token` may be processed.
    pub fn admits(&self, stream: &str, token: u64, published_ms: i64) -> bool {
        if token == 0 {
            return true; // published without a lease (a tool, an older node)
        }
        match self.leases.get(stream) {
            Some((lease, rev)) => admits(&lease, rev, token, published_ms),
            None => true, // released or lapsed: nobody else publishes under a newer token yet
        }
    }
}

fn admits(current: &Lease, revision: u64, token: u64, published_ms: i64) -> bool {
    token >= current.token_at(revision) || published_ms < current.acquired_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_under_an_older_lease_counts_only_from_before_the_takeover() {
        let current = Lease { owner: "b".into(), token: 50, acquired_ms: 10_000, expires_ms: 15_000 };
        assert!(admits(&current, 57, 50, 12_000), "the owner's own work");
        assert!(admits(&current, 57, 20, 9_990), "the old owner's tail, published before the takeover");
        assert!(!admits(&current, 57, 20, 10_000), "the old owner woke up and published after it");
        // The taking write itself (token 0 in the value): its revision is the token.
        let taking = Lease { token: 0, ..current };
        assert!(!admits(&taking, 50, 49, 10_500) && admits(&taking, 50, 50, 10_500));
    }
}
