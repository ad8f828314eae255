//! One worker: a durable pull consumer and a [`Batches`] implementation, run as one `select!`
//! loop over fetch, tick and shutdown inside a supervised ractor actor. A worker that returns an
//! error or panics fails its actor; the supervisor restarts it, and whatever it had not acked is
//! redelivered by JetStream. Killing the actor aborts the loop at once; stopping it lets the batch
//! in hand finish.

use crate::backoff::Backoff;
use crate::decision::{Action, Outcome, RetryPolicy, decide};
use async_nats::jetstream::{AckKind, Message, consumer::PullConsumer};
use futures::FutureExt;
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use sightline_bus::work::{dead_letter, delivered};
use sightline_bus::{Bus, BusError, WorkSpec, fetch_batch, work_consumer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot start the {worker} worker")]
    Start {
        worker: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the {worker} worker failed")]
    Failed {
        worker: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a worker does with its work.
pub trait Batches: Send + 'static {
    /// Name for logs ("scenes", "clickhouse").
    fn name(&self) -> &str;

    /// Handles a fetched, non-empty batch, settling every message (ack, nak, dead letter or
    /// term). Returns how long to pause before the next fetch (a store that is down), if at all.
    /// An error fails the worker.
    fn batch(
        &mut self,
        batch: Vec<Message>,
    ) -> impl Future<Output = Result<Option<Duration>, WorkerError>> + Send;

    /// How often [`Batches::tick`] runs between batches (None: never).
    fn tick_every(&self) -> Option<Duration> {
        None
    }

    /// Periodic work between batches (snapshots, lag export). The first tick runs at start.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Messages whose every earlier delivery ended without an answer (the worker crashed or was
/// killed mid-batch, each time): JetStream has one delivery left past `max_deliver`, and the
/// message would be dropped silently after it, so it goes to the dead-letter subject instead of
/// into a batch. Returns the rest.
async fn dead_letter_exhausted(bus: &Bus, kind: &str, work: &WorkSpec, batch: Vec<Message>) -> Vec<Message> {
    if work.max_deliver <= 0 {
        return batch;
    }
    let (exhausted, rest): (Vec<Message>, Vec<Message>) =
        batch.into_iter().partition(|m| delivered(m) > work.max_deliver);
    let policy = RetryPolicy::inference(work.max_deliver);
    for m in &exhausted {
        let why = format!(
            "none of its {} deliveries was answered (the worker crashed, was killed, or ran past ack_wait each time)",
            delivered(m) - 1
        );
        settle(bus, kind, m, Action::DeadLetter(why), &policy).await;
    }
    rest
}

/// Tells JetStream, every third of `ack_wait`, that the messages in hand are still being worked
/// on, so a long batch is not redelivered to another worker mid-work. Never returns.
async fn keep_in_progress(batch: Vec<Message>, ack_wait: Duration) {
    let every = (ack_wait / 3).max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        for m in &batch {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }
}

/// The loop: until `shutdown` turns true (or its sender is dropped), tick when due, fetch a batch
/// and hand it over. A failed fetch backs off (500 ms doubling to 5 s) without failing the worker.
pub async fn run<B: Batches>(
    mut batches: B,
    bus: Bus,
    consumer: PullConsumer,
    work: WorkSpec,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let fetch_retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    let mut fetch_failures = 0u32;
    let mut next_tick = Instant::now();
    loop {
        if let Some(every) = batches.tick_every()
            && Instant::now() >= next_tick
        {
            batches.tick().await;
            next_tick = Instant::now() + every;
        }
        let pause = tokio::select! {
            biased;
            _ = stopping(&mut shutdown) => return Ok(()),
            fetched = fetch_batch(&consumer, &work) => match fetched {
                Ok(batch) if batch.is_empty() => None,
                Ok(batch) => {
                    fetch_failures = 0;
                    let batch = dead_letter_exhausted(&bus, batches.name(), &work, batch).await;
                    if batch.is_empty() {
                        None
                    } else {
                        let progress = keep_in_progress(batch.clone(), work.ack_wait);
                        tokio::select! {
                            done = batches.batch(batch) => done?,
                            _ = progress => unreachable!("progress acks never end"),
                        }
                    }
                }
                Err(e) => {
                    fetch_failures += 1;
                    tracing::warn!(worker = batches.name(), error = %e, "fetch failed; retrying");
                    Some(fetch_retry.delay(fetch_failures))
                }
            },
        };
        if let Some(pause) = pause {
            tokio::select! {
                _ = stopping(&mut shutdown) => return Ok(()),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Resolves once shutdown is asked for (or nobody can ask any more).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Acknowledges a message as `action` says; a failed ack is logged (the message is redelivered).
pub async fn ack(msg: &Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::warn!(error = %e, "ack failed; the message will be redelivered");
    }
}

/// What became of a message [`settle`] was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Acknowledged or terminated: no longer waiting.
    Finished,
    /// Written to the dead-letter subject, then terminated.
    DeadLettered,
    /// Left for redelivery.
    Retrying,
}

/// Carries out `action` on `msg`; a dead letter goes to `<p>.dlq.<dlq_kind>`. Returns what became
/// of the message.
pub async fn settle(
    bus: &Bus,
    dlq_kind: &str,
    msg: &Message,
    action: Action,
    policy: &RetryPolicy,
) -> Settlement {
    match action {
        Action::Ack => ack(msg, AckKind::Ack).await,
        Action::Nak(delay) => {
            ack(msg, AckKind::Nak(Some(delay))).await;
            return Settlement::Retrying;
        }
        Action::Term => ack(msg, AckKind::Term).await,
        Action::DeadLetter(error) => {
            let times = delivered(msg);
            tracing::warn!(kind = dlq_kind, %error, delivered = times, "moving work to the dead-letter subject");
            match dead_letter(bus, dlq_kind, msg, &error, times).await {
                Ok(()) => {
                    ack(msg, AckKind::Term).await;
                    return Settlement::DeadLettered;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot write to the DLQ; leaving the message for redelivery");
                    if let Action::Nak(d) = decide(Outcome::DeadLetterFailed, times, policy) {
                        ack(msg, AckKind::Nak(Some(d))).await;
                    }
                    return Settlement::Retrying;
                }
            }
        }
    }
    Settlement::Finished
}

/// Builds a worker's [`Batches`] (models load on a blocking thread inside).
pub type MakeBatches<B> = Arc<dyn Fn() -> BoxFuture<'static, Result<B, WorkerError>> + Send + Sync>;

pub struct WorkerArgs<B> {
    pub bus: Bus,
    pub work: WorkSpec,
    pub make: MakeBatches<B>,
}

/// The ractor adapter: builds the worker in `pre_start`, runs [`run`] on a task, and fails when the
/// loop fails or panics, so the supervisor restarts it.
pub struct WorkerActor<B>(std::marker::PhantomData<fn() -> B>);

impl<B> Default for WorkerActor<B> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub enum WorkerMsg {
    /// The loop ended: cleanly, or with why it failed.
    Exited(Result<(), WorkerExit>),
}

pub struct WorkerState {
    shutdown: watch::Sender<bool>,
    task: Option<AbortOnDrop>,
}

/// Aborts the loop's task when the actor's state goes away (a killed actor never runs
/// `post_stop`), so a restarted worker never runs beside its predecessor.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<B: Batches> Actor for WorkerActor<B> {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = WorkerArgs<B>;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs<B>,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let batches = (args.make)().await?;
        let consumer = work_consumer(&args.bus, &args.work).await?;
        tracing::info!(worker = batches.name(), consumer = %args.work.consumer, "worker ready");
        let (shutdown, stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            let ended = std::panic::AssertUnwindSafe(run(batches, args.bus, consumer, args.work, stop))
                .catch_unwind()
                .await;
            let ended = match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(WorkerExit(error_chain(&e))),
                Err(panic) => Err(WorkerExit(panic_message(&panic))),
            };
            let _ = myself.send_message(WorkerMsg::Exited(ended));
        });
        Ok(WorkerState { shutdown, task: Some(AbortOnDrop(task)) })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        msg: WorkerMsg,
        _: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkerMsg::Exited(Ok(())) => {
                myself.stop(None);
                Ok(())
            }
            WorkerMsg::Exited(Err(why)) => Err(why.into()),
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<WorkerMsg>,
        st: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        // Let the batch in hand finish; its messages are settled before the loop sees the signal.
        let _ = st.shutdown.send(true);
        if let Some(mut task) = st.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut task.0).await;
        }
        Ok(())
    }
}

/// Why a worker's loop ended: its error with every cause, or its panic.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorkerExit(String);

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("worker panicked: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_resolves_on_the_signal_or_when_the_sender_is_gone() {
        let (tx, mut rx) = watch::channel(false);
        let waiting = tokio::spawn(async move { stopping(&mut rx).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();

        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), stopping(&mut rx)).await.unwrap();
    }

    #[test]
    fn errors_and_panics_say_what_failed() {
        let e = WorkerError::Failed { worker: "ocr".into(), source: "model exploded".into() };
        assert_eq!(error_chain(&e), "the ocr worker failed: model exploded");
        let p: Box<dyn std::any::Any + Send> = Box::new("index out of bounds");
        assert_eq!(panic_message(&p), "worker panicked: index out of bounds");
    }
}
