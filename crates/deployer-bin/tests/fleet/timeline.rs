//! What etcd's history says about a rollout: who held the rollout slot at each revision, and
//! when each host was switching, by the timestamps of its own statuses.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::ensure;

use crate::agent::SERVICE;
use crate::fleet::Change;

/// States in which a host is switching: from its first candidate container to the end of
/// draining (or of its rollback).
const SWITCHING: [&str; 5] = [
    "starting",
    "probing",
    "promoting",
    "draining",
    "rolling_back",
];

/// Replays the slot keys' puts and deletes; fails if more than `k` hosts ever held a slot at
/// once. Returns the hosts in the order they took one.
pub fn slot_order(changes: &[Change], k: usize) -> anyhow::Result<Vec<String>> {
    let prefix = format!("rollout/{SERVICE}/");
    let mut holders = BTreeSet::new();
    let mut order = Vec::new();
    for change in changes {
        let Some(node) = change.key.strip_prefix(&prefix) else {
            continue;
        };
        match change.value {
            Some(_) => {
                if holders.insert(node.to_owned()) {
                    order.push(node.to_owned());
                }
            }
            None => {
                holders.remove(node);
            }
        }
        ensure!(
            holders.len() <= k,
            "at etcd revision {} these hosts held rollout slots at once (K = {k}): {holders:?}",
            change.revision
        );
    }
    Ok(order)
}

/// Each host's switching intervals `[start, end)` in milliseconds since the epoch, from the
/// `updated_at` of its statuses: from the first switching status to the next one at rest
/// (`u64::MAX` if it never came).
pub fn switching(changes: &[Change]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let prefix = format!("status/{SERVICE}/");
    let mut intervals: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    for change in changes {
        let (Some(node), Some(status)) = (change.key.strip_prefix(&prefix), &change.value) else {
            continue;
        };
        let state = status["state"].as_str().unwrap_or_default();
        let at = status["updated_at"].as_u64().unwrap_or_default();
        let busy = SWITCHING.contains(&state);
        match (busy, open.contains_key(node)) {
            (true, false) => {
                open.insert(node.to_owned(), at);
            }
            (false, true) => {
                let start = open.remove(node).unwrap_or(at);
                intervals
                    .entry(node.to_owned())
                    .or_default()
                    .push((start, at));
            }
            _ => {}
        }
    }
    for (node, start) in open {
        intervals.entry(node).or_default().push((start, u64::MAX));
    }
    intervals
}

/// Fails if two hosts' switching intervals overlap by more than `slack_ms` (same machine,
/// same clock: the slack only covers the few milliseconds between a host releasing its slot
/// and stamping its next status).
pub fn disjoint(
    intervals: &BTreeMap<String, Vec<(u64, u64)>>,
    slack_ms: u64,
) -> anyhow::Result<()> {
    let all: Vec<(&String, (u64, u64))> = intervals
        .iter()
        .flat_map(|(node, list)| list.iter().map(move |i| (node, *i)))
        .collect();
    for (n, (node_a, a)) in all.iter().enumerate() {
        for (node_b, b) in &all[n + 1..] {
            if node_a == node_b {
                continue;
            }
            let overlap = a.1.min(b.1).saturating_sub(a.0.max(b.0));
            ensure!(
                overlap <= slack_ms,
                "{node_a} switched during {a:?} and {node_b} during {b:?}: {overlap} ms at once (all: {intervals:?})"
            );
        }
    }
    Ok(())
}
