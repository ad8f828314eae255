//! A Sightline node: connects to the bus, creates the wire contract, and starts the actors of the
//! roles it runs under one root supervisor that restarts any failed child with backoff.

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use sightline_bus::{Bus, BusError, Registry, WorkSpec};
use sightline_inference::{
    InferencePool, MakeProcessor, OcrProcessor, Processor, SceneProcessor, ShotProcessor, SpeechProcessor,
    registered,
};
use sightline_ingest::{StreamSupervisor, SupervisorArgs};
use sightline_runtime::worker::MakeBatches;
use sightline_runtime::{Backoff, Batches, FallbackPolicy, WorkerActor, WorkerArgs};
use sightline_settings::{Config, CutDetector, ModelSpec, WorkerConfig};
use sightline_sinks::{ClickHouseSink, VectorSink};
use sightline_store::{EventStore, StoreError};
use sightline_telemetry::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// Delay before a child that failed to start is tried again, by failures in a row.
const START_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// Delay before a failed child is restarted, by failures in a row.
const RESTART: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start actors: {0}")]
    Spawn(String),
}

/// Which parts of Sightline this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub gateway: bool,
    pub ingest: bool,
    pub inference: bool,
    pub sink: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { gateway: true, ingest: true, inference: true, sink: true };

    pub fn parse(list: &str) -> Result<Self, String> {
        let mut r = Roles { gateway: false, ingest: false, inference: false, sink: false };
        for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part {
                "gateway" => r.gateway = true,
                "ingest" => r.ingest = true,
                "inference" => r.inference = true,
                "sink" => r.sink = true,
                "all" => r = Roles::ALL,
                other => {
                    return Err(format!(
                        "unknown role `{other}`; roles are gateway, ingest, inference, sink"
                    ));
                }
            }
        }
        if r == (Roles { gateway: false, ingest: false, inference: false, sink: false }) {
            return Err("no roles given".into());
        }
        Ok(r)
    }
}

type StartFn = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

struct ChildSpec {
    name: String,
    start: StartFn,
}

struct RootSupervisor;

enum RootMsg {
    Restart(usize),
    /// Kills a running child by name, as a crash would (it is restarted like a failed one).
    Kill(String),
}

struct RootState {
    children: Vec<ChildSpec>,
    running: Vec<Option<ActorCell>>,
    restarts: Vec<u32>,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = Vec<ChildSpec>;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        children: Vec<ChildSpec>,
    ) -> Result<RootState, ActorProcessingErr> {
        let mut running = Vec::with_capacity(children.len());
        for c in &children {
            let cell = (c.start)(myself.get_cell()).await.map_err(|e| format!("{}: {e}", c.name))?;
            running.push(Some(cell));
        }
        let restarts = vec![0; children.len()];
        Ok(RootState { children, running, restarts })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RootMsg>,
        _: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children_and_wait(Some("node stopping".into()), Some(Duration::from_secs(10))).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let i = match msg {
            RootMsg::Restart(i) => i,
            RootMsg::Kill(name) => {
                let cell = st.children.iter().zip(&st.running).find(|(c, _)| c.name == name);
                match cell {
                    Some((_, Some(cell))) => {
                        tracing::warn!(child = %name, "killing actor on request");
                        cell.kill();
                    }
                    _ => tracing::warn!(child = %name, "no running actor of that name to kill"),
                }
                return Ok(());
            }
        };
        let c = &st.children[i];
        match (c.start)(myself.get_cell()).await {
            Ok(cell) => {
                tracing::info!(child = %c.name, "restarted");
                st.running[i] = Some(cell);
            }
            Err(e) => {
                st.restarts[i] += 1;
                let delay = START_RETRY.base(st.restarts[i]);
                tracing::error!(child = %c.name, error = %e, retry_in_ms = delay.as_millis() as u64, "restart failed");
                myself.send_after(delay, move || RootMsg::Restart(i));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        evt: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        // A failed child, or one killed outright (its work is cancelled mid-way), is restarted.
        let failed = match evt {
            SupervisionEvent::ActorFailed(cell, err) => Some((cell, err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, Some(reason)) if reason == "killed" => {
                Some((cell, reason))
            }
            _ => None,
        };
        if let Some((cell, err)) = failed {
            if let Some(i) =
                st.running.iter().position(|c| c.as_ref().map(|c| c.get_id()) == Some(cell.get_id()))
            {
                st.running[i] = None;
                st.restarts[i] += 1;
                let delay = RESTART.base(st.restarts[i]);
                tracing::error!(child = %st.children[i].name, error = %err, restart_in_ms = delay.as_millis() as u64, "actor failed; restarting");
                myself.send_after(delay, move || RootMsg::Restart(i));
            }
        }
        Ok(())
    }
}

pub struct Node {
    pub bus: Bus,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub store: EventStore,
    root: ActorRef<RootMsg>,
    root_done: tokio::task::JoinHandle<()>,
    /// Request/reply services this node answers (query embedding, playlist checks).
    services: Vec<tokio::task::JoinHandle<()>>,
}

/// `count` inference actors named `<kind>-<i>`, sharing one durable consumer. `model` is the
/// registry entry the pool runs; `make(spec)` builds a processor for an entry, so the entry's
/// fallback (one level) is built the same way.
#[allow(clippy::too_many_arguments)]
fn inference_workers<P: Processor>(
    children: &mut Vec<ChildSpec>,
    kind: &str,
    count: usize,
    bus: &Bus,
    metrics: &Arc<Metrics>,
    mut work: WorkSpec,
    cfg: &Config,
    model: &ModelSpec,
    make: impl Fn(ModelSpec) -> MakeProcessor<P>,
) {
    if model.batch_max > 0 {
        work.batch_max = model.batch_max;
    }
    let fallback = (!model.fallback.is_empty())
        .then(|| (make(registered(cfg, &model.fallback).clone()), FallbackPolicy::of(model)));
    let primary = make(model.clone());
    let make_bus = bus.clone();
    for i in 0..count {
        let (bus, metrics, primary, fallback) =
            (bus.clone(), metrics.clone(), primary.clone(), fallback.clone());
        let pool_work = work.clone();
        let make: MakeBatches<InferencePool<P>> = Arc::new(move || {
            let (bus, metrics, work, primary, fallback) =
                (bus.clone(), metrics.clone(), pool_work.clone(), primary.clone(), fallback.clone());
            Box::pin(async move { InferencePool::load(bus, &work, metrics, primary, fallback).await })
        });
        children.push(worker(format!("{kind}-{i}"), make_bus.clone(), work.clone(), make));
    }
}

/// A worker on the runtime, supervised like any other child.
fn worker<B: Batches>(name: String, bus: Bus, work: WorkSpec, make: MakeBatches<B>) -> ChildSpec {
    child::<WorkerActor<B>, _>(name, move || WorkerArgs {
        bus: bus.clone(),
        work: work.clone(),
        make: make.clone(),
    })
}

fn child<A, F>(name: impl Into<String>, make: F) -> ChildSpec
where
    A: Actor + Default,
    F: Fn() -> A::Arguments + Send + Sync + 'static,
{
    let make = Arc::new(make);
    ChildSpec {
        name: name.into(),
        start: Arc::new(move |sup: ActorCell| {
            let args = make();
            Box::pin(async move {
                Actor::spawn_linked(None, A::default(), args, sup).await.map(|(a, _)| a.get_cell())
            })
        }),
    }
}

impl Node {
    pub async fn start(cfg: &Config, roles: Roles, metrics: Arc<Metrics>) -> Result<Node, NodeError> {
        let bus = Bus::connect(&cfg.nats).await?;
        bus.ensure().await?;
        let registry = Registry::open(&bus).await?;
        let store = EventStore::new(&cfg.clickhouse);
        if roles.sink || roles.gateway {
            store.migrate(&cfg.clickhouse, &cfg.clickhouse.migrations_dir).await?;
        }
        let mut children = Vec::new();
        if roles.ingest {
            let (bus, registry, ingest, metrics) =
                (bus.clone(), registry.clone(), cfg.ingest.clone(), metrics.clone());
            children.push(child::<StreamSupervisor, _>("stream-supervisor", move || SupervisorArgs {
                bus: bus.clone(),
                registry: registry.clone(),
                ingest: ingest.clone(),
                metrics: metrics.clone(),
            }));
        }
        if roles.inference {
            let n = &bus.names;
            let work =
                |stream: String, filter: String, kind: &str, w: &WorkerConfig, ack_wait_s: u64| WorkSpec {
                    stream,
                    filters: vec![filter],
                    consumer: n.consumer(kind),
                    batch_max: w.batch_max,
                    batch_deadline: Duration::from_millis(w.batch_deadline_ms),
                    max_ack_pending: w.max_ack_pending,
                    max_deliver: w.max_deliver,
                    ack_wait: Duration::from_secs(ack_wait_s),
                };
            let models = &cfg.models;
            let s = &cfg.scenes;
            let scenes = work(n.frames_stream(), n.frames_all(), "scenes", &s.worker(), 30);
            let labels = registered(cfg, &models.labels);
            inference_workers(
                &mut children,
                "scenes",
                s.workers,
                &bus,
                &metrics,
                scenes,
                cfg,
                labels,
                |spec| {
                    let (full, metrics) = (cfg.clone(), metrics.clone());
                    Arc::new(move || SceneProcessor::load(&full, metrics.clone(), &spec))
                },
            );
            let sp = &cfg.speech;
            let speech = work(n.audio_stream(), n.audio_all(), "speech", &sp.worker(), 120);
            let stt = registered(cfg, &models.stt);
            inference_workers(
                &mut children,
                "speech",
                sp.workers,
                &bus,
                &metrics,
                speech,
                cfg,
                stt,
                |spec| {
                    let full = cfg.clone();
                    Arc::new(move || SpeechProcessor::load(&full, &spec))
                },
            );
            if cfg.ingest.cut_detector == CutDetector::Transnetv2 {
                let sh = &cfg.shots;
                let shots = work(n.shots_stream(), n.shots_all(), "shots", &sh.worker(), 60);
                let model = registered(cfg, &models.shots);
                inference_workers(
                    &mut children,
                    "shots",
                    sh.workers,
                    &bus,
                    &metrics,
                    shots,
                    cfg,
                    model,
                    |spec| {
                        let full = cfg.clone();
                        Arc::new(move || ShotProcessor::load(&full, &spec))
                    },
                );
            }
            let o = &cfg.ocr;
            let ocr = work(n.frames_stream(), n.frames_all(), "ocr", &o.worker(), 60);
            let ocr_model = registered(cfg, &models.ocr);
            inference_workers(&mut children, "ocr", o.workers, &bus, &metrics, ocr, cfg, ocr_model, |spec| {
                let (full, metrics) = (cfg.clone(), metrics.clone());
                Arc::new(move || OcrProcessor::load(&full, metrics.clone(), &spec))
            });
        }
        if roles.sink {
            let (bus2, store, sink, metrics2, registry2) =
                (bus.clone(), store.clone(), cfg.sink.clone(), metrics.clone(), registry.clone());
            let make: MakeBatches<ClickHouseSink> = Arc::new(move || {
                let (bus, store, sink, metrics, registry) =
                    (bus2.clone(), store.clone(), sink.clone(), metrics2.clone(), registry2.clone());
                Box::pin(async move { ClickHouseSink::new(&bus, store, registry, sink, metrics).await })
            });
            children.push(worker(
                "sink-clickhouse".into(),
                bus.clone(),
                ClickHouseSink::work(&bus, &cfg.sink),
                make,
            ));
            let (bus2, full, metrics2) = (bus.clone(), cfg.clone(), metrics.clone());
            let make: MakeBatches<VectorSink> = Arc::new(move || {
                let (bus, full, metrics) = (bus2.clone(), full.clone(), metrics2.clone());
                Box::pin(async move { VectorSink::new(&bus, &full, metrics).await })
            });
            children.push(worker(
                "sink-vectors".into(),
                bus.clone(),
                VectorSink::work(&bus, &cfg.vectors),
                make,
            ));
        }
        let mut services = Vec::new();
        if roles.inference {
            services.push(tokio::spawn(sightline_inference::query::serve_queries(bus.clone(), cfg.clone())));
        }
        if roles.ingest {
            services
                .push(tokio::spawn(sightline_ingest::checks::serve_checks(bus.clone(), cfg.ingest.clone())));
        }
        let (root, root_done) = Actor::spawn(
            Some(format!("sightline-root-{}", uuid::Uuid::new_v4().simple())),
            RootSupervisor,
            children,
        )
        .await
        .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(Node { bus, registry, metrics, store, root, root_done, services })
    }

    /// Kills the named actor (`scenes-0`, `speech-0`, `ocr-0`, `sink-clickhouse`, …) as a crash
    /// would: its in-flight work is abandoned unacked, JetStream redelivers it, and the supervisor
    /// restarts the actor with backoff. For failure drills and tests.
    pub fn kill_actor(&self, name: &str) {
        let _ = self.root.cast(RootMsg::Kill(name.to_string()));
    }

    /// Stops every actor (pipelines torn down, in-flight batches finished or left unacked for
    /// redelivery) and waits for them.
    pub async fn shutdown(self) {
        for s in &self.services {
            s.abort();
        }
        self.root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(15), self.root_done).await;
    }
}
