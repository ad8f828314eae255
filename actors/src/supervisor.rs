//! The root supervisor of a node: starts its children in order and restarts any that fails, with
//! backoff. A child is a name and a function that spawns it linked to the supervisor.

use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use sightline_bus::{Bus, WorkSpec};
use sightline_runtime::worker::MakeBatches;
use sightline_runtime::{Backoff, Batches, WorkerActor, WorkerArgs};
use std::sync::Arc;
use std::time::Duration;

/// Delay before a child that failed to start is tried again, by failures in a row.
const START_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// Delay before a failed child is restarted, by failures in a row.
const RESTART: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

type StartFn = Arc<dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync>;

pub(crate) struct ChildSpec {
    name: String,
    start: StartFn,
}

pub(crate) struct RootSupervisor;

pub(crate) enum RootMsg {
    Restart(usize),
    /// Kills a running child by name, as a crash would (it is restarted like a failed one).
    Kill(String),
}

pub(crate) struct RootState {
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
        if let Some((cell, err)) = failed
            && let Some(i) =
                st.running.iter().position(|c| c.as_ref().map(|c| c.get_id()) == Some(cell.get_id()))
        {
            st.running[i] = None;
            st.restarts[i] += 1;
            let delay = RESTART.base(st.restarts[i]);
            tracing::error!(child = %st.children[i].name, error = %err, restart_in_ms = delay.as_millis() as u64, "actor failed; restarting");
            myself.send_after(delay, move || RootMsg::Restart(i));
        }
        Ok(())
    }
}

/// A worker on the runtime, supervised like any other child.
pub(crate) fn worker<B: Batches>(name: String, bus: Bus, work: WorkSpec, make: MakeBatches<B>) -> ChildSpec {
    child::<WorkerActor<B>, _>(name, move || WorkerArgs {
        bus: bus.clone(),
        work: work.clone(),
        make: make.clone(),
    })
}

pub(crate) fn child<A, F>(name: impl Into<String>, make: F) -> ChildSpec
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
