//! Which ingest node runs which stream, as a pure function of what every node sees in the
//! membership and leases buckets, so each node decides the same and compare-and-set settles the
//! rare race. A stream stays with a live owner (stickiness); a free stream (new, released, or
//! its owner's lease lapsed) goes to the least-loaded live node relative to its capacity, ties
//! broken by rendezvous hashing; and a node above its fair share hands one stream at a time to a
//! node below its own, so a joining node takes its share over time without a storm of restarts.

use std::collections::{BTreeMap, BTreeSet};

/// A live ingest node as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub capacity: u32,
    pub draining: bool,
}

/// Who holds a registered stream's lease now.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    /// Nobody (never taken, released, or the holder's lease lapsed).
    Free,
    /// A node whose lease is current.
    Node(String),
}

/// What this node does now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Free streams to take, in order.
    pub take: Vec<String>,
    /// A stream to hand over (rebalancing), if any.
    pub hand_over: Option<String>,
}

/// Rendezvous score of `node` for `stream` (higher wins a tie).
fn score(node: &str, stream: &str) -> u64 {
    sightline_wire::stable_hash([node.as_bytes(), b"\0", stream.as_bytes()])
}

/// `me`'s plan. `members`: the live ingest nodes (me included); `streams`: every registered,
/// unpaused stream and its holder; `overdue`: free streams nobody took for a while (any node with
/// room takes those); `may_rebalance`: the rebalance interval has passed.
pub fn plan(
    me: &str,
    members: &[Member],
    streams: &BTreeMap<String, Holder>,
    overdue: &BTreeSet<String>,
    may_rebalance: bool,
) -> Plan {
    let mut out = Plan::default();
    let Some(mine) = members.iter().find(|m| m.id == me) else { return out };
    if mine.draining {
        return out;
    }
    let active: Vec<&Member> = members.iter().filter(|m| !m.draining && m.capacity > 0).collect();
    let mut load: BTreeMap<&str, u32> = active.iter().map(|m| (m.id.as_str(), 0)).collect();
    for h in streams.values() {
        if let Holder::Node(n) = h
            && let Some(l) = load.get_mut(n.as_str())
        {
            *l += 1;
        }
    }
    // Free streams, assigned one by one as every node would, each to the least-loaded node.
    for (stream, holder) in streams {
        if *holder != Holder::Free {
            continue;
        }
        let best = active
            .iter()
            .filter(|m| load[m.id.as_str()] < m.capacity)
            .min_by(|a, b| {
                let (la, lb) = (load[a.id.as_str()] as u64, load[b.id.as_str()] as u64);
                // load/capacity, compared without division; then the higher rendezvous score.
                (la * b.capacity as u64)
                    .cmp(&(lb * a.capacity as u64))
                    .then_with(|| score(&b.id, stream).cmp(&score(&a.id, stream)))
            })
            .map(|m| m.id.as_str());
        let Some(best) = best else { break }; // every node is full
        let mine_has_room = load[me] < mine.capacity;
        if best == me || (overdue.contains(stream) && mine_has_room) {
            out.take.push(stream.clone());
            *load.get_mut(me).unwrap() += 1;
        } else {
            *load.get_mut(best).unwrap() += 1;
        }
    }
    if !may_rebalance || !out.take.is_empty() {
        return out;
    }
    // Rebalance: above my fair share while another node is below its own, hand one over.
    let total: u64 = load.values().map(|&l| l as u64).sum();
    let caps: u64 = active.iter().map(|m| m.capacity as u64).sum();
    let fair = |m: &Member| total * m.capacity as u64 / caps.max(1); // floor
    let held = load[me] as u64;
    let above = held > fair(mine) + u64::from(!(total * mine.capacity as u64).is_multiple_of(caps.max(1)));
    let below = active.iter().find(|m| m.id != me && (load[m.id.as_str()] as u64) < fair(m));
    if let (true, Some(other)) = (above, below) {
        // The stream the other node ranks highest among mine.
        out.hand_over = streams
            .iter()
            .filter(|(_, h)| **h == Holder::Node(me.to_string()))
            .max_by_key(|(s, _)| score(&other.id, s))
            .map(|(s, _)| s.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(spec: &[(&str, u32)]) -> Vec<Member> {
        spec.iter().map(|(id, c)| Member { id: id.to_string(), capacity: *c, draining: false }).collect()
    }

    fn free(n: usize) -> BTreeMap<String, Holder> {
        (0..n).map(|i| (format!("s{i}"), Holder::Free)).collect()
    }

    /// Runs every node's plan against one view until nothing changes; returns streams per node.
    fn settle(
        ms: &[Member],
        mut streams: BTreeMap<String, Holder>,
        rounds: usize,
    ) -> BTreeMap<String, usize> {
        for _ in 0..rounds {
            let mut changed = false;
            for m in ms {
                let p = plan(&m.id, ms, &streams, &BTreeSet::new(), true);
                for s in p.take {
                    if streams[&s] == Holder::Free {
                        streams.insert(s, Holder::Node(m.id.clone()));
                        changed = true;
                    }
                }
                if let Some(s) = p.hand_over {
                    streams.insert(s, Holder::Free);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let mut per: BTreeMap<String, usize> = ms.iter().map(|m| (m.id.clone(), 0)).collect();
        for h in streams.values() {
            if let Holder::Node(n) = h {
                *per.get_mut(n).unwrap() += 1;
            }
        }
        per
    }

    #[test]
    fn every_node_plans_the_same_even_split() {
        let ms = members(&[("a", 8), ("b", 8)]);
        let streams = free(6);
        let a = plan("a", &ms, &streams, &BTreeSet::new(), false).take;
        let b = plan("b", &ms, &streams, &BTreeSet::new(), false).take;
        assert_eq!((a.len(), b.len()), (3, 3));
        assert!(a.iter().all(|s| !b.contains(s)), "no stream planned twice: {a:?} {b:?}");
    }

    #[test]
    fn capacity_weights_the_split_and_bounds_it() {
        let per = settle(&members(&[("a", 2), ("b", 6)]), free(8), 4);
        assert_eq!((per["a"], per["b"]), (2, 6));
        // More streams than room: the rest wait.
        let per = settle(&members(&[("a", 2), ("b", 3)]), free(9), 4);
        assert_eq!((per["a"], per["b"]), (2, 3));
    }

    #[test]
    fn a_live_owner_keeps_its_streams_and_a_joiner_takes_its_share_one_at_a_time() {
        let mut streams = free(6);
        for h in streams.values_mut() {
            *h = Holder::Node("a".into());
        }
        let ms = members(&[("a", 8), ("b", 8)]);
        // b never takes what a holds; a hands over one per rebalance, and only when allowed.
        assert_eq!(plan("b", &ms, &streams, &BTreeSet::new(), true), Plan::default());
        assert_eq!(plan("a", &ms, &streams, &BTreeSet::new(), false), Plan::default());
        let p = plan("a", &ms, &streams, &BTreeSet::new(), true);
        let handed = p.hand_over.expect("a is above its share");
        streams.insert(handed.clone(), Holder::Free);
        assert_eq!(plan("b", &ms, &streams, &BTreeSet::new(), false).take, vec![handed]);
        let per = settle(&ms, streams, 10);
        assert_eq!((per["a"], per["b"]), (3, 3));
        // Balanced within one: nothing moves (5 streams on two equal nodes).
        let mut five = free(5);
        for (i, h) in five.values_mut().enumerate() {
            *h = Holder::Node(if i < 3 { "a".into() } else { "b".into() });
        }
        assert_eq!(plan("a", &ms, &five, &BTreeSet::new(), true), Plan::default());
    }

    #[test]
    fn a_dead_or_draining_nodes_streams_go_to_the_others() {
        // c's leases lapsed (its streams are Free) and c left the membership.
        let ms = members(&[("a", 8), ("b", 8)]);
        let mut streams = free(4);
        streams.insert("x".into(), Holder::Node("a".into()));
        let per = settle(&ms, streams, 4);
        assert_eq!(per["a"] + per["b"], 5);
        assert!(per["a"].abs_diff(per["b"]) <= 1, "{per:?}");
        // A draining node takes nothing, and nothing is planned for it.
        let mut ms = members(&[("a", 8), ("b", 8)]);
        ms[1].draining = true;
        assert!(plan("b", &ms, &free(3), &BTreeSet::new(), true).take.is_empty());
        assert_eq!(plan("a", &ms, &free(3), &BTreeSet::new(), false).take.len(), 3);
    }

    #[test]
    fn an_overdue_stream_is_taken_by_any_node_with_room() {
        let ms = members(&[("a", 8), ("b", 8)]);
        let streams = free(1);
        let (a, b) = (
            plan("a", &ms, &streams, &BTreeSet::new(), false).take,
            plan("b", &ms, &streams, &BTreeSet::new(), false).take,
        );
        let loser = if a.is_empty() { "a" } else { "b" };
        assert!(a.len() + b.len() == 1);
        let overdue: BTreeSet<String> = ["s0".to_string()].into();
        assert_eq!(plan(loser, &ms, &streams, &overdue, false).take, vec!["s0".to_string()]);
    }
}
