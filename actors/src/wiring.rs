//! Which actors a role runs: one function per stage, each returning the stage's supervised
//! children (the stream supervisor; the model pools; the sinks).

use crate::supervisor::{ChildSpec, child, worker};
use sightline_bus::{Bus, Registry, WorkSpec};
use sightline_inference::{
    Enrich, InferencePool, MakeProcessor, OcrProcessor, Processor, SceneProcessor, ShotProcessor,
    SpeechProcessor, registered,
};
use sightline_ingest::{StreamSupervisor, SupervisorArgs};
use sightline_runtime::FallbackPolicy;
use sightline_runtime::worker::MakeBatches;
use sightline_settings::{Config, CutDetector, ModelSpec, WorkerConfig};
use sightline_sinks::{ClickHouseSink, VectorSink};
use sightline_store::EventStore;
use sightline_telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// What every stage's actors are built from.
pub(crate) struct Wiring<'a> {
    pub cfg: &'a Config,
    pub bus: &'a Bus,
    pub registry: &'a Registry,
    pub store: &'a EventStore,
    pub metrics: &'a Arc<Metrics>,
    pub presence: &'a Arc<sightline_ingest::Presence>,
}

impl Wiring<'_> {
    /// Ingest: the stream supervisor, which starts one stream actor per registered stream.
    pub fn ingest(&self) -> Vec<ChildSpec> {
        let (bus, registry, ingest, metrics) =
            (self.bus.clone(), self.registry.clone(), self.cfg.ingest.clone(), self.metrics.clone());
        let (cluster, presence) = (self.cfg.cluster.clone(), self.presence.clone());
        vec![child::<StreamSupervisor, _>("stream-supervisor", move || SupervisorArgs {
            bus: bus.clone(),
            registry: registry.clone(),
            ingest: ingest.clone(),
            metrics: metrics.clone(),
            cluster: cluster.clone(),
            presence: presence.clone(),
        })]
    }

    /// Inference: the scenes, speech, OCR and (with TransNetV2) shots pools.
    pub fn inference(&self) -> Vec<ChildSpec> {
        let (cfg, n) = (self.cfg, &self.bus.names);
        let models = &cfg.models;
        let mut children = Vec::new();
        let (s, metrics) = (&cfg.scenes, self.metrics.clone());
        let work = self.work(n.frames_stream(), n.frames_all(), "scenes", &s.worker());
        // Frames' label text is embedded, and keyframes are checked for duplicates, in this pool.
        let enrich = Enrich::new(cfg, true, true);
        children.extend(self.pool(
            "scenes",
            s.workers,
            work,
            registered(cfg, &models.labels),
            enrich,
            |spec| {
                let (full, metrics) = (cfg.clone(), metrics.clone());
                Arc::new(move || SceneProcessor::load(&full, metrics.clone(), &spec))
            },
        ));
        let sp = &cfg.speech;
        let work = self.work(n.audio_stream(), n.audio_all(), "speech", &sp.worker());
        let enrich = Enrich::new(cfg, true, false);
        children.extend(self.pool(
            "speech",
            sp.workers,
            work,
            registered(cfg, &models.stt),
            enrich,
            |spec| {
                let full = cfg.clone();
                Arc::new(move || SpeechProcessor::load(&full, &spec))
            },
        ));
        if cfg.ingest.cut_detector == CutDetector::Transnetv2 {
            let sh = &cfg.shots;
            let work = self.work(n.shots_stream(), n.shots_all(), "shots", &sh.worker());
            let model = registered(cfg, &models.shots);
            children.extend(self.pool("shots", sh.workers, work, model, Enrich::none(), |spec| {
                let full = cfg.clone();
                Arc::new(move || ShotProcessor::load(&full, &spec))
            }));
        }
        let (o, metrics) = (&cfg.ocr, self.metrics.clone());
        let work = self.work(n.frames_stream(), n.frames_all(), "ocr", &o.worker());
        let enrich = Enrich::new(cfg, true, false);
        children.extend(self.pool("ocr", o.workers, work, registered(cfg, &models.ocr), enrich, |spec| {
            let (full, metrics) = (cfg.clone(), metrics.clone());
            Arc::new(move || OcrProcessor::load(&full, metrics.clone(), &spec))
        }));
        children
    }

    /// Sinks: ClickHouse and the vector sets.
    pub fn sinks(&self) -> Vec<ChildSpec> {
        let (bus, cfg) = (self.bus, self.cfg);
        let (bus2, store, sink, metrics, registry) =
            (bus.clone(), self.store.clone(), cfg.sink.clone(), self.metrics.clone(), self.registry.clone());
        let clickhouse: MakeBatches<ClickHouseSink> = Arc::new(move || {
            let (bus, store, sink, metrics, registry) =
                (bus2.clone(), store.clone(), sink.clone(), metrics.clone(), registry.clone());
            Box::pin(async move { ClickHouseSink::new(&bus, store, registry, sink, metrics).await })
        });
        let (bus2, full, metrics) = (bus.clone(), cfg.clone(), self.metrics.clone());
        let vectors: MakeBatches<VectorSink> = Arc::new(move || {
            let (bus, full, metrics) = (bus2.clone(), full.clone(), metrics.clone());
            Box::pin(async move { VectorSink::new(&bus, &full, metrics).await })
        });
        vec![
            worker("sink-clickhouse".into(), bus.clone(), ClickHouseSink::work(bus, &cfg.sink), clickhouse),
            worker("sink-vectors".into(), bus.clone(), VectorSink::work(bus, &cfg.vectors), vectors),
        ]
    }

    /// A pool's consumer: `kind` on `stream`, bounded by the pool's settings.
    fn work(&self, stream: String, filter: String, kind: &str, w: &WorkerConfig) -> WorkSpec {
        WorkSpec {
            batch_max: w.batch_max,
            batch_deadline: Duration::from_millis(w.batch_deadline_ms),
            max_ack_pending: w.max_ack_pending,
            max_deliver: w.max_deliver,
            ack_wait: Duration::from_secs(sightline_settings::ack_wait_s(kind)),
            lag_target: (w.lag_target_ms > 0).then(|| Duration::from_millis(w.lag_target_ms)),
            max_lag: (w.max_lag_ms > 0).then(|| Duration::from_millis(w.max_lag_ms)),
            ..WorkSpec::new(stream, filter, self.bus.names.consumer(kind))
        }
    }

    /// `count` workers named `<kind>-<i>`, sharing one durable consumer. `model` is the registry
    /// entry the pool runs; `make(spec)` builds a processor for an entry, so the entry's fallback
    /// (one level) is built the same way.
    fn pool<P: Processor>(
        &self,
        kind: &str,
        count: usize,
        mut work: WorkSpec,
        model: &ModelSpec,
        enrich: Enrich,
        make: impl Fn(ModelSpec) -> MakeProcessor<P>,
    ) -> Vec<ChildSpec> {
        if model.batch_max > 0 {
            work.batch_max = model.batch_max;
        }
        let fallback = (!model.fallback.is_empty())
            .then(|| (make(registered(self.cfg, &model.fallback).clone()), FallbackPolicy::of(model)));
        let primary = make(model.clone());
        (0..count)
            .map(|i| {
                let (bus, metrics, primary, fallback, enrich) = (
                    self.bus.clone(),
                    self.metrics.clone(),
                    primary.clone(),
                    fallback.clone(),
                    enrich.clone(),
                );
                let pool_work = work.clone();
                let make: MakeBatches<InferencePool<P>> = Arc::new(move || {
                    let (bus, metrics, work, primary, fallback, enrich) = (
                        bus.clone(),
                        metrics.clone(),
                        pool_work.clone(),
                        primary.clone(),
                        fallback.clone(),
                        enrich.clone(),
                    );
                    Box::pin(async move {
                        InferencePool::load(bus, &work, metrics, primary, fallback, enrich).await
                    })
                });
                worker(format!("{kind}-{i}"), self.bus.clone(), work.clone(), make)
            })
            .collect()
    }
}
