//! `StreamSupervisor`: follows the registry and runs one `StreamActor` for each registered
//! stream whose lease this node holds ([`crate::ownership`]): every heartbeat it renews its
//! leases, takes the free streams the placement gives it, hands one over when above its fair
//! share, and stops a stream whose lease another node took. Restarts a crashed actor with
//! backoff, stops deleted and paused streams, and hands every stream over when draining.

use crate::ownership::{LeaseGuard, Ownership, Presence};
use crate::stream_actor::{StreamActor, StreamActorArgs, StreamMsg};
use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use sightline_bus::Bus;
use sightline_bus::{Change, Registry, StreamSpec};
use sightline_runtime::Backoff;
use sightline_settings::{ClusterConfig, IngestConfig};
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
    pub cluster: ClusterConfig,
    /// This node's id, capacity and draining flag, and the streams it owns (for its heartbeat).
    pub presence: Arc<Presence>,
}

pub enum SupervisorMsg {
    Registry(Change),
    /// Renew the leases, then reconcile.
    Heartbeat,
    /// Take, hand over or drain streams as the placement says.
    Reconcile,
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
    ownership: Ownership,
    heartbeat: ractor::concurrency::JoinHandle<()>,
}

impl SupervisorState {
    fn id_of(&self, cell: &ActorCell) -> Option<String> {
        self.running.iter().find(|(_, a)| a.get_id() == cell.get_id()).map(|(id, _)| id.clone())
    }
}

async fn spawn_stream(
    myself: &ActorRef<SupervisorMsg>,
    st: &mut SupervisorState,
    spec: StreamSpec,
    guard: Arc<LeaseGuard>,
) {
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
        guard,
        node_id: st.args.presence.id.clone(),
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
        let ownership = Ownership::start(&args.bus, args.cluster.clone(), args.presence.clone()).await?;
        let heartbeat = myself
            .send_interval(Duration::from_millis(args.cluster.heartbeat_ms), || SupervisorMsg::Heartbeat);
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
            ownership,
            heartbeat,
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
        st.heartbeat.abort();
        // Streams stop before their leases go, so another node never overlaps this one.
        for (_, a) in st.running.drain() {
            let _ = a.stop_and_wait(Some("node stopping".into()), Some(Duration::from_secs(5))).await;
        }
        for id in st.ownership.held() {
            st.ownership.release(&id).await;
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
                    if stop_stream(st, &id, "stream paused").await {
                        tracing::info!(stream = %id, "stream actor stopped (paused)");
                    }
                    st.ownership.release(&id).await;
                } else {
                    reconcile(&myself, st).await;
                }
            }
            SupervisorMsg::Registry(Change::Delete(id)) => {
                st.specs.remove(&id);
                st.crashes.remove(&id);
                let held = st.ownership.holds(&id);
                if stop_stream(st, &id, "stream deleted").await {
                    tracing::info!(stream = %id, "stream actor stopped (deleted)");
                }
                st.ownership.forget(&id).await;
                if held && let Err(e) = st.args.registry.delete_status(&id).await {
                    tracing::warn!(stream = %id, error = %e, "cannot clear status");
                }
            }
            SupervisorMsg::Heartbeat => {
                let (lost, unsure) = st.ownership.renew().await;
                if unsure {
                    // NATS did not answer (a server lost, a leader being elected): try again soon,
                    // to renew before the lease lapses for the other nodes.
                    myself.send_after(Duration::from_millis(250), || SupervisorMsg::Heartbeat);
                }
                for id in lost {
                    st.args
                        .metrics
                        .leases
                        .get_or_create(&sightline_telemetry::labels(&[("event", "lost")]))
                        .inc();
                    stop_stream(st, &id, "lease taken over by another node").await;
                }
                reconcile(&myself, st).await;
            }
            SupervisorMsg::Reconcile => reconcile(&myself, st).await,
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
                if let Some(spec) = st.specs.get(&id).cloned().filter(|s| !s.paused)
                    && let (false, Some(guard)) = (st.running.contains_key(&id), st.ownership.guard(&id))
                {
                    spawn_stream(&myself, st, spec, guard).await;
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

/// Stops a stream's actor and waits for it (its pipeline torn down, its pump ended), so that
/// the lease can go to another node without two publishers overlapping. True if one ran.
async fn stop_stream(st: &mut SupervisorState, id: &str, why: &str) -> bool {
    if let Some(g) = st.ownership.guard(id) {
        g.revoke();
    }
    match st.running.remove(id) {
        Some(a) => {
            let _ = a.stop_and_wait(Some(why.into()), Some(Duration::from_secs(5))).await;
            true
        }
        None => false,
    }
}

/// Carries out the placement: takes the streams it gives this node and starts them, hands one
/// over when rebalancing, and hands everything over when draining.
async fn reconcile(myself: &ActorRef<SupervisorMsg>, st: &mut SupervisorState) {
    let count = |st: &SupervisorState, event: &str| {
        st.args.metrics.leases.get_or_create(&sightline_telemetry::labels(&[("event", event)])).inc();
    };
    if st.args.presence.draining() {
        for id in st.ownership.held() {
            stop_stream(st, &id, "node draining").await;
            st.ownership.release(&id).await;
            count(st, "drained");
            tracing::info!(stream = %id, "stream handed over (node draining)");
        }
        st.args.metrics.streams_owned.set(0);
        return;
    }
    let wanted: std::collections::BTreeSet<String> =
        st.specs.values().filter(|s| !s.paused).map(|s| s.id.clone()).collect();
    let plan = st.ownership.plan(&wanted);
    for id in plan.take {
        let Some(spec) = st.specs.get(&id).cloned() else { continue };
        match st.ownership.take(&id).await {
            Ok(Some(guard)) => {
                count(st, "taken");
                if !st.running.contains_key(&id) {
                    spawn_stream(myself, st, spec, guard).await;
                }
            }
            Ok(None) => {} // another node was faster
            Err(e) => tracing::warn!(stream = %id, error = %e, "cannot take the stream lease"),
        }
    }
    if let Some(id) = plan.hand_over {
        stop_stream(st, &id, "handed over to an emptier node").await;
        st.ownership.release(&id).await;
        count(st, "handed_over");
        tracing::info!(stream = %id, "stream handed over (rebalancing)");
    }
    st.args.metrics.streams_owned.set(st.ownership.held().len() as i64);
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
