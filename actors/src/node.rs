//! A Sightline node: connects to the bus, creates the wire contract, and starts the actors of the
//! roles it runs under one root supervisor that restarts any failed child with backoff.

use crate::bus::{Bus, BusError};
use crate::inference::{
    FallbackPolicy, InferenceActor, InferenceArgs, MakeProcessor, OcrProcessor, Processor, SceneProcessor,
    ShotProcessor, SpeechProcessor, WorkSpec, registered,
};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::sink::{ClickHouseSink, SinkArgs};
use crate::supervisor::{StreamSupervisor, SupervisorArgs};
use crate::vector_sink::{VectorSink, VectorSinkArgs};
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use sightline_settings::{Config, ModelSpec, WorkerConfig};
use sightline_store::{EventStore, StoreError};
use std::sync::Arc;
use std::time::Duration;

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
                let delay = Duration::from_millis((500u64 << st.restarts[i].min(6)).min(30_000));
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
                let delay = Duration::from_millis((250u64 << st.restarts[i].min(7)).min(30_000));
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
    for i in 0..count {
        let (bus, metrics, work, primary, fallback) =
            (bus.clone(), metrics.clone(), work.clone(), primary.clone(), fallback.clone());
        children.push(child::<InferenceActor<P>, _>(format!("{kind}-{i}"), move || InferenceArgs {
            bus: bus.clone(),
            work: work.clone(),
            metrics: metrics.clone(),
            make: primary.clone(),
            fallback: fallback.clone(),
        }));
    }
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

impl Default for StreamSupervisor {
    fn default() -> Self {
        StreamSupervisor
    }
}
impl Default for ClickHouseSink {
    fn default() -> Self {
        ClickHouseSink
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
            if cfg.ingest.cut_detector == "transnetv2" {
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
            children.push(child::<ClickHouseSink, _>("sink-clickhouse", move || SinkArgs {
                bus: bus2.clone(),
                store: store.clone(),
                registry: registry2.clone(),
                cfg: sink.clone(),
                metrics: metrics2.clone(),
            }));
            let (bus, full, metrics) = (bus.clone(), cfg.clone(), metrics.clone());
            children.push(child::<VectorSink, _>("sink-vectors", move || VectorSinkArgs {
                bus: bus.clone(),
                cfg: full.clone(),
                metrics: metrics.clone(),
            }));
        }
        let (root, root_done) = Actor::spawn(
            Some(format!("sightline-root-{}", uuid::Uuid::new_v4().simple())),
            RootSupervisor,
            children,
        )
        .await
        .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(Node { bus, registry, metrics, store, root, root_done })
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
        self.root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(15), self.root_done).await;
    }
}
