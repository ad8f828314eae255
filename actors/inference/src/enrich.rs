//! What a pool adds to its events before it publishes them: the embedding of every event's text
//! (for the vector sink's `text` set) and, for keyframes, whether another stream showed the same
//! picture recently (a `duplicate` event). Inference makes these decisions; the sinks only write.

use crate::loading::load_embedder;
use crate::pool::{ItemError, ItemResult};
use crate::scenes::FRAME_MODEL;
use sightline_models::{ModelError, TextEmbedder};
use sightline_settings::Config;
use sightline_store::{Query, VectorStore, filter_string};
use sightline_telemetry::Metrics;
use sightline_wire::{Detail, DuplicateInfo, Event, EventKind, Names, StreamRef, VectorSpace};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which enrichments a pool runs (built in [`Enrich::load`]).
#[derive(Clone)]
pub struct Enrich {
    cfg: Option<Arc<Config>>,
    text_vectors: bool,
    duplicates: bool,
}

impl Enrich {
    /// Events published as the model made them.
    pub fn none() -> Self {
        Self { cfg: None, text_vectors: false, duplicates: false }
    }

    pub fn new(cfg: &Config, text_vectors: bool, duplicates: bool) -> Self {
        Self { cfg: Some(Arc::new(cfg.clone())), text_vectors, duplicates }
    }

    /// Loads the text embedder (on a blocking thread) and prepares the duplicate finder.
    pub async fn load(&self, names: &Names, metrics: &Arc<Metrics>) -> Result<Vec<Enrichment>, ModelError> {
        let Some(cfg) = self.cfg.clone() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        if self.text_vectors {
            let full = cfg.clone();
            let embedder = tokio::task::spawn_blocking(move || load_embedder(&full))
                .await
                .map_err(|e| ModelError::Input(format!("loading the text embedder: {e}")))??;
            out.push(Enrichment::TextVectors(TextVectors { embedder: Arc::new(Mutex::new(embedder)) }));
        }
        if self.duplicates {
            out.push(Enrichment::Duplicates(DuplicateFinder::new(&cfg, names, metrics.clone())));
        }
        Ok(out)
    }
}

pub enum Enrichment {
    TextVectors(TextVectors),
    Duplicates(DuplicateFinder),
}

impl Enrichment {
    /// Adds to the events of every message that succeeded. A failed text embedding fails those
    /// messages (they are retried like any model failure).
    pub async fn apply(&mut self, results: &mut [ItemResult]) {
        match self {
            Enrichment::TextVectors(t) => t.apply(results).await,
            Enrichment::Duplicates(d) => d.apply(results).await,
        }
    }
}

/// MiniLM over every event's text, one run per batch.
pub struct TextVectors {
    embedder: Arc<Mutex<TextEmbedder>>,
}

impl TextVectors {
    async fn apply(&self, results: &mut [ItemResult]) {
        // (message, event) of every event with text.
        let at: Vec<(usize, usize)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|events| (i, events)))
            .flat_map(|(i, events)| {
                events.iter().enumerate().filter(|(_, e)| has_text(e)).map(move |(j, _)| (i, j))
            })
            .collect();
        if at.is_empty() {
            return;
        }
        let texts: Vec<String> = at
            .iter()
            .map(|&(i, j)| results[i].as_ref().map(|e| e[j].text.clone()).unwrap_or_default())
            .collect();
        let embedder = self.embedder.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.lock().unwrap_or_else(|e| e.into_inner()).embed(&refs)
        })
        .await;
        match ran {
            Ok(Ok(vectors)) => {
                for ((i, j), v) in at.into_iter().zip(vectors) {
                    if let Ok(events) = results[i].as_mut() {
                        events[j].text_vector = v;
                    }
                }
            }
            Ok(Err(e)) => fail(results, &at, &format!("text embedding failed: {e}")),
            Err(e) => fail(results, &at, &format!("text embedding failed: {e}")),
        }
    }
}

/// Whether an event's text goes into the text set.
fn has_text(e: &Event) -> bool {
    e.kind.is_text() && !e.text.trim().is_empty()
}

fn fail(results: &mut [ItemResult], at: &[(usize, usize)], why: &str) {
    for &(i, _) in at {
        results[i] = Err(ItemError(why.to_string()));
    }
}

/// A keyframe this worker saw recently, for duplicates within and across its batches before the
/// vector sink has written them.
struct Recent {
    id: String,
    stream: String,
    pts_ms: i64,
    wall_ms: i64,
    vector: Vec<f32>,
}

/// Keyframes remembered at most (oldest forgotten first).
const MAX_RECENT: usize = 10_000;
/// Longest wait for the frames set.
const INDEX_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the frames set is left alone after it failed to answer.
const INDEX_REST: Duration = Duration::from_secs(5);

/// Compares each keyframe with recent keyframes of other streams: those this worker saw itself,
/// and those in the vector sink's `frames` set. The most similar one at or above
/// `vectors.duplicate_min_similarity` makes a `duplicate` event. While Redis cannot be reached the
/// set is not consulted: the skipped checks are counted, and the stream's events keep flowing.
pub struct DuplicateFinder {
    url: String,
    store: Option<VectorStore>,
    /// After a failure the set is not asked again before this (a Redis outage must not slow the
    /// pool down).
    retry_at: Option<Instant>,
    frames_set: String,
    min_similarity: f32,
    window_ms: i64,
    recent: VecDeque<Recent>,
    metrics: Arc<Metrics>,
}

impl DuplicateFinder {
    fn new(cfg: &Config, names: &Names, metrics: Arc<Metrics>) -> Self {
        Self {
            url: cfg.redis.url.clone(),
            store: None,
            retry_at: None,
            frames_set: names.vector_set(VectorSpace::Frames),
            min_similarity: cfg.vectors.duplicate_min_similarity,
            window_ms: cfg.vectors.duplicate_window_s as i64 * 1000,
            recent: VecDeque::new(),
            metrics,
        }
    }

    async fn apply(&mut self, results: &mut [ItemResult]) {
        for events in results.iter_mut().filter_map(|r| r.as_mut().ok()) {
            let mut found = Vec::new();
            for e in events.iter().filter(|e| e.kind == EventKind::Frame) {
                let Some(f) = e.frame().filter(|f| f.keyframe && !f.vector.is_empty()) else { continue };
                if let Some(dup) = self.find(e, &f.vector).await {
                    found.push(dup);
                }
                self.remember(e, f.vector.clone());
            }
            events.extend(found);
        }
    }

    /// The best match among this worker's recent keyframes and the frames set.
    async fn find(&mut self, e: &Event, vector: &[f32]) -> Option<Event> {
        let since = e.wall_ms - self.window_ms;
        let local = self
            .recent
            .iter()
            .filter(|r| r.stream != e.stream_id && r.wall_ms >= since)
            .map(|r| (similarity(vector, &r.vector), r.id.clone(), r.stream.clone(), r.pts_ms))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let indexed = self.indexed(e, vector, since).await;
        let best = [local, indexed].into_iter().flatten().max_by(|a, b| a.0.total_cmp(&b.0))?;
        let (score, other_id, other_stream, other_pts) = best;
        if score < self.min_similarity {
            return None;
        }
        let mut dup = Event::new(
            EventKind::Duplicate,
            StreamRef::new(&e.stream_id, e.incarnation),
            e.pts_ms,
            e.wall_ms,
            FRAME_MODEL,
        );
        dup.score = score;
        dup.text = format!("same picture as {other_stream} at {other_pts} ms");
        let info = DuplicateInfo {
            frame_id: e.id.clone(),
            other_frame_id: other_id,
            other_stream_id: other_stream,
            other_pts_ms: other_pts,
            similarity: score,
        };
        tracing::info!(stream = %e.stream_id, pts_ms = e.pts_ms, other = ?info, "duplicate keyframe");
        dup.detail = Some(Detail::Duplicate(info));
        Some(dup)
    }

    /// The most similar keyframe of another stream in the frames set, when Redis answers.
    async fn indexed(&mut self, e: &Event, vector: &[f32], since: i64) -> Option<(f32, String, String, i64)> {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            self.metrics.duplicate_checks_skipped.inc();
            return None;
        }
        if self.store.is_none() {
            match tokio::time::timeout(INDEX_TIMEOUT, VectorStore::connect(&self.url)).await {
                Ok(Ok(store)) => self.store = Some(store),
                Ok(Err(e)) => return self.skipped(&e.to_string()),
                Err(_) => return self.skipped("no answer from Redis"),
            }
        }
        let store = self.store.as_ref()?;
        let filter =
            format!(".keyframe and .stream != {} and .wall_ms >= {since}", filter_string(&e.stream_id));
        let asked = store.similar(&self.frames_set, Query::Vector(vector), 1, Some(&filter));
        match tokio::time::timeout(INDEX_TIMEOUT, asked).await {
            Ok(Ok(hits)) => {
                self.retry_at = None;
                let best = hits.into_iter().next()?;
                let other = best.attrs?;
                Some((best.score, best.id, other.stream, other.pts_ms))
            }
            Ok(Err(e)) => self.skipped(&e.to_string()),
            Err(_) => self.skipped("no answer from Redis"),
        }
    }

    /// Counts a check the set could not answer, and rests the set for a while.
    fn skipped<T>(&mut self, why: &str) -> Option<T> {
        self.metrics.duplicate_checks_skipped.inc();
        self.retry_at = Some(Instant::now() + INDEX_REST);
        tracing::warn!(%why, rest_s = INDEX_REST.as_secs(), "duplicate checks against the frames set skipped");
        None
    }

    fn remember(&mut self, e: &Event, vector: Vec<f32>) {
        let since = e.wall_ms - self.window_ms;
        while self.recent.front().is_some_and(|r| r.wall_ms < since) || self.recent.len() >= MAX_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            id: e.id.clone(),
            stream: e.stream_id.clone(),
            pts_ms: e.pts_ms,
            wall_ms: e.wall_ms,
            vector,
        });
    }
}

/// The vector sets' similarity: (1 + cosine) / 2.
fn similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 || a.len() != b.len() {
        return 0.0;
    }
    (1.0 + dot / (na * nb)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_wire::FrameInfo;

    fn keyframe(stream: &str, pts_ms: i64, wall_ms: i64, vector: Vec<f32>) -> Event {
        let mut e = Event::new(EventKind::Frame, stream, pts_ms, wall_ms, FRAME_MODEL);
        e.detail = Some(Detail::Frame(FrameInfo {
            keyframe: true,
            phash: String::new(),
            vector,
            labels: Vec::new(),
            features: Vec::new(),
            image_text: Vec::new(),
            thumbnail: String::new(),
        }));
        e
    }

    fn finder() -> DuplicateFinder {
        let mut cfg = Config::default();
        // Nothing listens here: only this worker's own keyframes are compared.
        cfg.redis.url = "redis://127.0.0.1:1".into();
        cfg.vectors.duplicate_window_s = 60;
        DuplicateFinder::new(&cfg, &Names::new("t"), Metrics::new())
    }

    #[test]
    fn similarity_is_the_vector_sets_score() {
        assert!((similarity(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(similarity(&[1.0, 0.0], &[-1.0, 0.0]).abs() < 1e-6);
        assert!((similarity(&[1.0, 0.0], &[0.0, 1.0]) - 0.5).abs() < 1e-6);
        assert_eq!(similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[tokio::test]
    async fn a_keyframe_another_stream_just_showed_is_a_duplicate_even_in_the_same_batch() {
        let mut f = finder();
        let a = keyframe("a", 5_000, 1_000_000, vec![1.0, 0.2, 0.0]);
        let b = keyframe("b", 9_000, 1_002_000, vec![1.0, 0.2, 0.001]);
        let other = keyframe("c", 1_000, 1_003_000, vec![0.0, 1.0, 0.0]);
        let mut results = vec![Ok(vec![a]), Ok(vec![b]), Ok(vec![other])];
        f.apply(&mut results).await;
        let kinds = |r: &ItemResult| r.as_ref().unwrap().iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&results[0]), [EventKind::Frame], "the first showing is no duplicate");
        assert_eq!(kinds(&results[1]), [EventKind::Frame, EventKind::Duplicate]);
        assert_eq!(kinds(&results[2]), [EventKind::Frame], "a different picture");
        let dup = results[1].as_ref().unwrap()[1].duplicate().cloned().unwrap();
        assert_eq!((dup.other_stream_id.as_str(), dup.other_pts_ms), ("a", 5_000));
        assert_eq!(dup.frame_id, results[1].as_ref().unwrap()[0].id, "its id derives from the keyframe");
        assert_eq!(f.metrics.duplicate_checks_skipped.get(), 3, "every check the set missed is counted");
    }

    #[tokio::test]
    async fn the_same_stream_and_old_keyframes_are_not_duplicates() {
        let mut f = finder();
        let v = vec![0.3, 0.3, 0.9];
        let mut results = vec![
            Ok(vec![keyframe("a", 0, 1_000_000, v.clone())]),
            Ok(vec![keyframe("a", 500, 1_000_500, v.clone())]),
            // 61 s later: past the window.
            Ok(vec![keyframe("b", 0, 1_061_000, v.clone())]),
        ];
        f.apply(&mut results).await;
        assert!(results.iter().all(|r| r.as_ref().unwrap().len() == 1), "{results:?}");
    }
}
