//! `StreamSupervisor`: follows the registry and keeps exactly one `StreamActor` running per
//! registered stream on this node; restarts a crashed one with backoff, stops deleted ones.

use crate::stream_actor::{StreamActor, StreamActorArgs, StreamMsg};
use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use sightline_bus::Bus;
use sightline_bus::{Change, Registry, StreamSpec};
use sightline_runtime::Backoff;
use sightline_settings::IngestConfig;
use sightline_telemetry::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Delay before a crashed stream actor is started again, by crashes in a row.
const RESPAWN: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

#[derive(Default)]
pub struct StreamSupervisor;

pub struct SupervisorArgs {
    pub bus: Bus,
    pub registry: Registry,
    pub ingest: IngestConfig,
    pub metrics: Arc<Metrics>,
}

pub enum SupervisorMsg {
    Registry(Change),
    Respawn(String),
    /// A pool shed work of this stream (core NATS `<p>.shed.<stream>`).
    Shed(String, sightline_wire::ShedNotice),
    Settled(String, sightline_wire::SettledNotice),
}

pub struct SupervisorState {
    args: SupervisorArgs,
    specs: HashMap<String, StreamSpec>,
    running: HashMap<String, ActorRef<StreamMsg>>,
    crashes: HashMap<String, u32>,
    watcher: tokio::task::JoinHandle<()>,
    /// Forwards the pools' shed notices to the stream actors.
    shed_listener: tokio::task::JoinHandle<()>,
    settled_listener: tokio::task::JoinHandle<()>,
    /// The loopback proxy every HTTP source of this node is read through.
    egress: Arc<sightline_egress::EgressProxy>,
}

impl SupervisorState {
    fn id_of(&self, cell: &ActorCell) -> Option<String> {
        self.running.iter().find(|(_, a)| a.get_id() == cell.get_id()).map(|(id, _)| id.clone())
    }
}

async fn spawn_stream(myself: &ActorRef<SupervisorMsg>, st: &mut SupervisorState, spec: StreamSpec) {
    let live = sightline_streams::validate_url(&spec.url, &st.args.ingest.allowed_schemes)
        .map(|u| u.live)
        .unwrap_or(true);
    let args = StreamActorArgs {
        spec: spec.clone(),
        live,
        bus: st.args.bus.clone(),
        registry: st.args.registry.clone(),
        ingest: st.args.ingest.clone(),
        metrics: st.args.metrics.clone(),
        egress: st.egress.clone(),
    };
    match Actor::spawn_linked(None, StreamActor, args, myself.get_cell()).await {
        Ok((actor, _)) => {
            tracing::info!(stream = %spec.id, url = %sightline_policy::redact_url(&spec.url), "stream actor started");
            st.running.insert(spec.id.clone(), actor);
        }
        Err(e) => {
            tracing::error!(stream = %spec.id, error = %e, "stream actor did not start; retrying");
            let id = spec.id.clone();
            myself.send_after(Duration::from_secs(2), move || SupervisorMsg::Respawn(id));
        }
    }
}

impl Actor for StreamSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let egress =
            Arc::new(sightline_egress::EgressProxy::start(crate::checks::egress_config(&args.ingest)).await?);
        let names = &args.bus.names;
        let shed_listener = listen(&args.bus, names.shed_all(), myself.clone(), SupervisorMsg::Shed).await?;
        let settled_listener =
            listen(&args.bus, names.settled_all(), myself.clone(), SupervisorMsg::Settled).await?;
        let mut changes = args.registry.watch().await?;
        let me = myself.clone();
        let watcher = tokio::spawn(async move {
            while let Some(c) = changes.next().await {
                if me.send_message(SupervisorMsg::Registry(c)).is_err() {
                    break;
                }
            }
        });
        Ok(SupervisorState {
            args,
            specs: HashMap::new(),
            running: HashMap::new(),
            crashes: HashMap::new(),
            watcher,
            shed_listener,
            settled_listener,
            egress,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        st.watcher.abort();
        st.shed_listener.abort();
        st.settled_listener.abort();
        for (_, a) in st.running.drain() {
            a.stop(Some("node stopping".into()));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Registry(Change::Put(spec)) => {
                let id = spec.id.clone();
                st.specs.insert(id.clone(), spec.clone());
                if spec.paused {
                    if let Some(a) = st.running.remove(&id) {
                        a.stop(Some("stream paused".into()));
                        tracing::info!(stream = %id, "stream actor stopped (paused)");
                    }
                } else if !st.running.contains_key(&id) {
                    spawn_stream(&myself, st, spec).await;
                }
            }
            SupervisorMsg::Registry(Change::Delete(id)) => {
                st.specs.remove(&id);
                st.crashes.remove(&id);
                if let Some(a) = st.running.remove(&id) {
                    a.stop(Some("stream deleted".into()));
                    tracing::info!(stream = %id, "stream actor stopped (deleted)");
                }
                if let Err(e) = st.args.registry.delete_status(&id).await {
                    tracing::warn!(stream = %id, error = %e, "cannot clear status");
                }
            }
            SupervisorMsg::Shed(id, notice) => {
                // Streams this node does not run are another node's to show.
                if let Some(a) = st.running.get(&id) {
                    let _ = a.send_message(StreamMsg::Shed(notice));
                }
            }
            SupervisorMsg::Settled(id, notice) => {
                if let Some(a) = st.running.get(&id) {
                    let _ = a.send_message(StreamMsg::Settled(notice));
                }
            }
            SupervisorMsg::Respawn(id) => {
                if let Some(spec) = st.specs.get(&id).cloned().filter(|s| !s.paused) {
                    if !st.running.contains_key(&id) {
                        spawn_stream(&myself, st, spec).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some(id) = st.id_of(&cell) {
                    st.running.remove(&id);
                    let n = st.crashes.entry(id.clone()).or_insert(0);
                    *n += 1;
                    let delay = RESPAWN.base(*n);
                    tracing::error!(stream = %id, error = %err, restart_in_ms = delay.as_millis() as u64, "stream actor crashed");
                    myself.send_after(delay, move || SupervisorMsg::Respawn(id));
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(id) = st.id_of(&cell) {
                    st.running.remove(&id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Forwards the notices on `subject` (`<p>.<what>.<stream>`, JSON) to the supervisor as `msg`
/// of the stream named by the subject's last token; unreadable ones are skipped.
async fn listen<N: serde::de::DeserializeOwned + Send + 'static>(
    bus: &Bus,
    subject: String,
    me: ActorRef<SupervisorMsg>,
    msg: fn(String, N) -> SupervisorMsg,
) -> Result<tokio::task::JoinHandle<()>, ActorProcessingErr> {
    let mut notices = bus.client.subscribe(subject).await?;
    Ok(tokio::spawn(async move {
        while let Some(m) = notices.next().await {
            let Some(stream) = m.subject.rsplit('.').next().map(str::to_string) else { continue };
            let Ok(notice) = serde_json::from_slice::<N>(&m.payload) else { continue };
            if me.send_message(msg(stream, notice)).is_err() {
                break;
            }
        }
    }))
}
