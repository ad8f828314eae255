//! What the capacity harness reads off each stream's status (`/v1/streams/{id}`): shed work by
//! pool and reason, dropped frames and the stream's state, summed over a step's streams.

use crate::capacity::Api;
use std::collections::BTreeMap;

#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) shed: u64,
    pub(crate) shed_by: BTreeMap<String, u64>,
    pub(crate) dropped: u64,
    pub(crate) states: BTreeMap<String, usize>,
}

/// Shed work, dropped frames and states over the given streams, from `/v1/streams/{id}`.
pub(crate) async fn totals(api: &Api, ids: &[String]) -> Totals {
    let mut t = Totals::default();
    for id in ids {
        let Ok((200, v)) = api.call(reqwest::Method::GET, &format!("/v1/streams/{id}"), None).await else {
            continue;
        };
        let d = &v["detail"];
        t.dropped += d["dropped_frames"].as_u64().unwrap_or(0);
        for (why, n) in d["shed"].as_object().into_iter().flatten() {
            let n = n.as_u64().unwrap_or(0);
            t.shed += n;
            *t.shed_by.entry(why.clone()).or_default() += n;
        }
        *t.states.entry(v["status"].as_str().unwrap_or("unknown").to_string()).or_default() += 1;
    }
    t
}

/// What was shed between two readings, by pool and reason (the ones that grew).
pub(crate) fn shed_during(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, &n)| (k.clone(), n.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|&(_, n)| n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_work_is_told_by_pool_and_reason() {
        let m = |v: &[(&str, u64)]| v.iter().map(|&(k, n)| (k.to_string(), n)).collect::<BTreeMap<_, _>>();
        let before = m(&[("ocr.lag", 4), ("speech.coarse", 1)]);
        let after = m(&[("ocr.lag", 4), ("speech.coarse", 3), ("scenes.too_late", 2)]);
        assert_eq!(shed_during(&before, &after), m(&[("scenes.too_late", 2), ("speech.coarse", 2)]));
    }
}
