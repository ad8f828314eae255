//! An inference pool: workers sharing one durable consumer, each running a [`Processor`] (a
//! registry entry's model) and, when the entry names one, its fallback. A batch runs on a blocking
//! thread; its events are published before its messages are acked. What happens to each message
//! is the runtime's pure decision ([`sightline_runtime::decide`]), and which model runs a batch is
//! [`FallbackPolicy::route`].

use crate::enrich::{Enrich, Enrichment};
use crate::extra::{ExtraParts, ExtraWork};
use crate::running::{BatchResults, Ran, run_model};
use crate::shedding::{Pace, RecentBatches, Settled, shed_decision};
use async_nats::jetstream::Message;
use sightline_bus::work::delivered;
use sightline_bus::{Bus, WorkSpec, publish_events};
use sightline_models::ModelError;
use sightline_runtime::worker::{Settlement, settle};
use sightline_runtime::{
    Batches, FallbackPolicy, FallbackReason, Outcome, RetryPolicy, Route, WorkerError, decide,
};
use sightline_telemetry::{Metrics, labels};
use sightline_wire::{Event, ShedNotice, ShedReason, WorkHeader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Streams whose last frame a processor remembers; past this the memory is cleared (bounded state).
pub(crate) const MAX_TRACKED_STREAMS: usize = 4096;

/// Why a model could not turn a work item into events. The item is retried and, after
/// `max_deliver` tries, dead-lettered with this text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ItemError(pub String);

impl From<ModelError> for ItemError {
    fn from(e: ModelError) -> Self {
        Self(e.to_string())
    }
}

impl From<sightline_wire::WireError> for ItemError {
    fn from(e: sightline_wire::WireError) -> Self {
        Self(e.to_string())
    }
}

impl From<&str> for ItemError {
    fn from(e: &str) -> Self {
        Self(e.to_string())
    }
}

/// One work item's events, or why there are none.
pub type ItemResult = Result<Vec<Event>, ItemError>;

/// A model behind an inference pool: turns work messages into events.
pub trait Processor: Send + 'static {
    /// Work kind, used for consumer, DLQ subject and metric names ("scenes", "speech").
    fn kind(&self) -> &'static str;
    /// Model name@version recorded in events.
    fn model(&self) -> &str;
    fn process(&mut self, payload: &[u8]) -> ItemResult;
    /// Whether this pool may shed the item to catch up when it is behind its lag target (the
    /// items it gives up first). Default: never (only items past `max_lag` are shed).
    fn sheddable(_header: &WorkHeader) -> bool
    where
        Self: Sized,
    {
        false
    }
    /// Told before each batch how the pool stands against its lag target. A processor that can
    /// run coarser to catch up (less effort per item, no item dropped) does so while
    /// [`Pace::Behind`] and returns true (counted as coarse work); one with optional extra work
    /// (more effort per item than its baseline) does it only while [`Pace::Ahead`] (not counted:
    /// its baseline is what the pool promises). Default: nothing changes.
    fn set_pace(&mut self, _pace: Pace) -> bool {
        false
    }
    /// Told before each batch when it should be out ([`Pace::extra_until`]: within its room
    /// while ahead, at once otherwise, None without a lag target): optional work a processor can
    /// stop short of (speech: Whisper judging re-heard English) is left undone past it. Default:
    /// nothing changes.
    fn set_extra_until(&mut self, _until: Option<std::time::Instant>) {}
    /// Such work so far, in all, by kind: its time is left out of the batch durations that
    /// forecast the next batches ([`crate::shedding::RecentBatches`]), since it stops short of
    /// whatever room the next batch has. Default: none.
    fn extra_work(&self) -> ExtraParts {
        Vec::new()
    }
    /// A whole batch (messages of several streams); models that can batch their inference across
    /// the messages override this.
    fn process_batch(&mut self, payloads: &[bytes::Bytes]) -> Vec<ItemResult> {
        payloads.iter().map(|p| self.process(p)).collect()
    }
}

pub type MakeProcessor<P> = Arc<dyn Fn() -> Result<P, ModelError> + Send + Sync>;

/// How often a pool with a queue threshold asks JetStream how much work waits.
const QUEUE_LOOK_EVERY: Duration = Duration::from_millis(250);

/// One pool worker's state: its models and the fallback's bookkeeping.
pub struct InferencePool<P> {
    bus: Bus,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    /// None when the primary failed to load and the fallback serves alone.
    primary: Option<Arc<Mutex<P>>>,
    fallback: Option<(Arc<Mutex<P>>, FallbackPolicy)>,
    kind: &'static str,
    model: String,
    /// The fallback serves until then (after a primary timeout).
    fallback_until: Option<Instant>,
    /// Work waiting at the last look, and when that was.
    waiting: (Option<u64>, Option<Instant>),
    /// Added to the events before they are published (text vectors, duplicates).
    enrich: Vec<Enrichment>,
    lag_target: Option<Duration>,
    max_lag: Option<Duration>,
    /// How long the last few batches took and how many items each ran: an item is shed as too
    /// late when its age plus what its batch may take passes the hard limit, so what is run still
    /// comes out within the bound.
    recent_batches: RecentBatches,
    /// Refuses work published under a stream lease that was taken over since.
    fence: sightline_bus::Fence,
}

impl<P: Processor> InferencePool<P> {
    /// Loads the primary and the fallback (on blocking threads). The pool starts when at least one
    /// of them loads.
    pub async fn load(
        bus: Bus,
        work: &WorkSpec,
        metrics: Arc<Metrics>,
        make: MakeProcessor<P>,
        fallback: Option<(MakeProcessor<P>, FallbackPolicy)>,
        enrich: Enrich,
    ) -> Result<Self, WorkerError> {
        let start_err = |e: Box<dyn std::error::Error + Send + Sync>| WorkerError::Start {
            worker: work.consumer.clone(),
            source: e,
        };
        let load = |make: MakeProcessor<P>| async move {
            tokio::task::spawn_blocking(move || make()).await.map_err(|e| start_err(e.into()))
        };
        let primary = load(make).await?;
        let fallback = match fallback {
            Some((make, policy)) => match load(make).await? {
                Ok(p) => Some((p, policy)),
                Err(e) if primary.is_ok() => {
                    tracing::warn!(error = %e, "fallback model failed to load; running without one");
                    None
                }
                Err(e) => return Err(start_err(e.into())),
            },
            None => None,
        };
        let primary = match primary {
            Ok(p) => Some(p),
            Err(e) if fallback.is_some() => {
                tracing::error!(error = %e, "model failed to load; its fallback serves instead");
                None
            }
            Err(e) => return Err(start_err(e.into())),
        };
        let enrich = enrich.load(&bus.names, &metrics).await.map_err(|e| start_err(e.into()))?;
        let consumer = sightline_bus::work_consumer(&bus, work).await?;
        let fence = sightline_bus::Fence::start(&sightline_bus::Cluster::open(&bus).await?).await?;
        let first = primary.as_ref().or(fallback.as_ref().map(|f| &f.0)).expect("one model loaded");
        let (kind, model) = (first.kind(), first.model().to_string());
        let fallback_model = fallback.as_ref().map(|f| f.0.model().to_string());
        tracing::info!(kind, %model, fallback = ?fallback_model, consumer = %work.consumer, "inference worker ready");
        Ok(Self {
            bus,
            consumer,
            metrics,
            retry: RetryPolicy::inference(work.max_deliver),
            primary: primary.map(|p| Arc::new(Mutex::new(p))),
            fallback: fallback.map(|(p, policy)| (Arc::new(Mutex::new(p)), policy)),
            kind,
            model,
            fallback_until: None,
            waiting: (None, None),
            enrich,
            lag_target: work.lag_target,
            max_lag: work.max_lag,
            recent_batches: RecentBatches::default(),
            fence,
        })
    }

    /// The model for this batch ([`FallbackPolicy::route`]); the queue is looked up at most every
    /// 250 ms, and only when the policy watches it.
    async fn route(&mut self) -> Route {
        let Some((_, policy)) = self.fallback.as_ref() else { return Route::Primary };
        let policy = *policy;
        if policy.watches_queue() && self.waiting.1.is_none_or(|t| t.elapsed() >= QUEUE_LOOK_EVERY) {
            let waiting = self.consumer.info().await.ok().map(|i| i.num_pending);
            self.waiting = (waiting, Some(Instant::now()));
        }
        let cooling = self.fallback_until.is_some_and(|t| Instant::now() < t);
        policy.route(self.primary.is_some(), cooling, self.waiting.0)
    }

    fn count_fallback(&self, reason: FallbackReason, n: usize) {
        let l = labels(&[("model", &self.model), ("reason", reason.as_str())]);
        self.metrics.model_fallbacks.get_or_create(&l).inc_by(n as u64);
    }
}

impl<P: Processor> Batches for InferencePool<P> {
    fn name(&self) -> &str {
        self.kind
    }

    async fn batch(&mut self, batch: Vec<Message>) -> Result<Option<Duration>, WorkerError> {
        let mut settled = Settled::default();
        let result = self.run_batch(batch, &mut settled).await;
        settled.send(&self.bus, self.kind).await;
        result
    }
}

impl<P: Processor> InferencePool<P> {
    async fn run_batch(
        &mut self,
        batch: Vec<Message>,
        settled: &mut Settled,
    ) -> Result<Option<Duration>, WorkerError> {
        let (batch, oldest) = self.shed_late(batch, settled).await;
        if batch.is_empty() {
            return Ok(None);
        }
        let run = self.recent_batches.run(batch.len());
        let pace = Pace::of(oldest, run, self.lag_target);
        let extra_until = pace.extra_until(Instant::now(), oldest, run, self.lag_target);
        tracing::debug!(
            pool = self.kind,
            items = batch.len(),
            oldest_ms = oldest,
            busy_permille = run.busy_permille,
            worst_ms = run.worst_ms,
            pace = pace.label(),
            "batch paced"
        );
        let started_ms = sightline_wire::now_ms();
        let l = labels(&[("model", &self.model), ("pool", self.kind)]);
        self.metrics.batch_size.get_or_create(&l).observe(batch.len() as f64);
        self.metrics
            .pool_batches
            .get_or_create(&labels(&[("pool", self.kind), ("pace", pace.label())]))
            .inc();
        let again = batch.iter().filter(|m| delivered(m) > 1).count();
        if again > 0 {
            self.metrics.redelivered.get_or_create(&labels(&[("kind", self.kind)])).inc_by(again as u64);
        }
        let payloads: Vec<bytes::Bytes> = batch.iter().map(|m| m.payload.clone()).collect();
        let started = Instant::now();
        let route = self.route().await;
        let fallback = self.fallback.as_ref().map(|(p, policy)| (p.clone(), *policy));
        // A model's panic is an item failure (see `run_model`); a task that cannot be joined
        // otherwise fails the worker, and its supervisor restarts it.
        let failed =
            |e: tokio::task::JoinError| WorkerError::Failed { worker: self.kind.into(), source: e.into() };
        let ran = match (route, &self.primary, &fallback) {
            (Route::Fallback(reason), _, Some((fb, _))) => {
                self.count_fallback(reason, batch.len());
                run_model(fb, payloads.clone(), None, (pace, extra_until)).await.map_err(failed)?
            }
            (_, Some(primary), fb) => run_model(
                primary,
                payloads.clone(),
                fb.as_ref().and_then(|f| f.1.timeout),
                (pace, extra_until),
            )
            .await
            .map_err(failed)?,
            _ => unreachable!("a worker has a primary or a fallback"),
        };
        let Some(Ran { mut results, model, coarse, cpu, waited, extra_parts }) = ran else {
            // The primary ran past its timeout: the fallback serves for a while, and this batch is
            // redelivered to it.
            let cooldown = fallback.map(|f| f.1.cooldown).unwrap_or_default();
            self.fallback_until = Some(Instant::now() + cooldown);
            self.count_fallback(FallbackReason::Timeout, batch.len());
            tracing::warn!(kind = self.kind, model = %self.model, cooldown_s = cooldown.as_secs(), "model timed out; its fallback serves");
            for msg in &batch {
                let action = decide(Outcome::TimedOut, delivered(msg), &self.retry);
                if settle(&self.bus, self.kind, msg, action, &self.retry).await != Settlement::Retrying {
                    settled.add(msg);
                }
            }
            return Ok(None);
        };
        // Items the primary failed on are retried on the fallback at once.
        if let (Route::Primary, Some((fb, _))) = (route, &fallback) {
            self.retry_on_fallback(fb, &payloads, &mut results).await?;
        }
        // Latency is the model's that ran the batch.
        let took = started.elapsed();
        let l = labels(&[("model", &model), ("pool", self.kind)]);
        self.metrics.inference_seconds.get_or_create(&l).observe(took.as_secs_f64());
        self.metrics.inference_cpu_seconds.get_or_create(&l).inc_by(cpu.as_secs_f64());
        if let Some(waited) = waited {
            self.metrics.inference_wait_seconds.get_or_create(&l).inc_by(waited.as_secs_f64());
        }
        // Work stopped short at `extra_until` is left out: it fits whatever room there is.
        let extra = extra_parts.iter().fold(ExtraWork::default(), |all, (_, w)| all.plus(*w));
        let forecast = took.saturating_sub(extra.spent);
        for (work, w) in extra_parts.iter().filter(|(_, w)| *w != ExtraWork::default()) {
            let l = labels(&[("pool", self.kind), ("work", work)]);
            self.metrics.extra_work_seconds.get_or_create(&l).inc_by(w.spent.as_secs_f64());
            for (outcome, n) in [("done", w.done), ("no_room", w.no_room)] {
                let l = labels(&[("pool", self.kind), ("work", work), ("outcome", outcome)]);
                self.metrics.extra_work.get_or_create(&l).inc_by(n);
            }
        }
        tracing::debug!(
            pool = self.kind,
            took_ms = took.as_millis() as u64,
            extra_ms = extra.spent.as_millis() as u64,
            extra_done = extra.done,
            extra_no_room = extra.no_room,
            "batch ran"
        );
        self.recent_batches.record(
            forecast.as_millis() as i64,
            extra.spent.as_millis() as i64,
            batch.len(),
            pace == Pace::Ahead,
        );
        if coarse {
            let per_stream = batch.iter().filter_map(|m| WorkHeader::read(&m.payload)).fold(
                std::collections::BTreeMap::<String, u64>::new(),
                |mut acc, h| {
                    *acc.entry(h.stream_id).or_default() += 1;
                    acc
                },
            );
            self.tell_shed(per_stream.into_iter().map(|(s, n)| ((s, ShedReason::Coarse), n)), oldest).await;
        }

        let done_ms = sightline_wire::now_ms();
        for (msg, result) in batch.iter().zip(results.iter_mut()) {
            let queued_ms = crate::shedding::published_ms(msg, started_ms);
            let timing = sightline_wire::Timing { queued_ms, started_ms, done_ms };
            for e in result.iter_mut().flatten() {
                e.timing = Some(timing);
            }
        }
        for step in &mut self.enrich {
            step.apply(&mut results).await;
        }
        self.settle_all(batch, results, settled).await;
        Ok(None)
    }
}

impl<P: Processor> InferencePool<P> {
    /// Keeps the pool's lag bounded: items its policy gives up first are acked unprocessed while
    /// the pool is behind its lag target, and every item past `max_lag`; each is counted, and each
    /// stream concerned is told (`<p>.shed.<stream>`) so that it shows `degraded` with the reason.
    /// Returns the items to run.
    async fn shed_late(&mut self, batch: Vec<Message>, settled: &mut Settled) -> (Vec<Message>, i64) {
        let now = sightline_wire::now_ms();
        let mut oldest = 0i64;
        let mut keep = Vec::with_capacity(batch.len());
        let mut shed: std::collections::BTreeMap<(String, ShedReason), u64> = Default::default();
        let run = self.recent_batches.run(batch.len());
        for m in batch {
            let Some(h) = WorkHeader::read(&m.payload) else {
                keep.push(m); // the model reports what is wrong with it
                continue;
            };
            // Published by a node that lost the stream's lease after another took over: dropped.
            if !self.fence.admits(&h.stream_id, h.lease, crate::shedding::published_ms(&m, now)) {
                sightline_runtime::worker::ack(&m, async_nats::jetstream::AckKind::Term).await;
                settled.add(&m);
                self.metrics.fenced.get_or_create(&labels(&[("pool", self.kind)])).inc();
                tracing::warn!(pool = self.kind, stream = %h.stream_id, lease = h.lease, "work from a fenced-off owner refused");
                continue;
            }
            let age = h.age_ms(now);
            oldest = oldest.max(age);
            match shed_decision(age, run, P::sheddable(&h), self.lag_target, self.max_lag) {
                Some(reason) => {
                    sightline_runtime::worker::ack(&m, async_nats::jetstream::AckKind::Ack).await;
                    settled.add(&m);
                    *shed.entry((h.stream_id, reason)).or_default() += 1;
                }
                None => keep.push(m),
            }
        }
        let pool = labels(&[("pool", self.kind)]);
        self.metrics.pool_lag_seconds.get_or_create(&pool).set(oldest as f64 / 1000.0);
        self.tell_shed(shed.into_iter(), oldest).await;
        (keep, oldest)
    }

    /// Counts work shed (or run coarser) per stream and reason, and tells each stream's ingest
    /// node (`<p>.shed.<stream>`), which shows the stream `degraded` with the reason.
    async fn tell_shed(&self, shed: impl Iterator<Item = ((String, ShedReason), u64)>, oldest: i64) {
        let target_ms = self.lag_target.map(|d| d.as_millis() as i64).unwrap_or_default();
        for ((stream, reason), count) in shed {
            let l = labels(&[("pool", self.kind), ("reason", reason.as_str())]);
            self.metrics.shed.get_or_create(&l).inc_by(count);
            let notice = ShedNotice { pool: self.kind.into(), reason, count, lag_ms: oldest, target_ms };
            tracing::debug!(pool = self.kind, %stream, count, lag_ms = oldest, ?reason, "shed work to keep the lag bounded");
            let payload = serde_json::to_vec(&notice).expect("notice serialises");
            if let Err(e) =
                self.bus.client.publish(self.bus.names.shed_subject(&stream), payload.into()).await
            {
                tracing::debug!(error = %e, "cannot send a shed notice");
            }
        }
    }

    /// Runs the items the primary failed on through the fallback, keeping both errors when the
    /// fallback fails too.
    async fn retry_on_fallback(
        &self,
        fallback: &Arc<Mutex<P>>,
        payloads: &[bytes::Bytes],
        results: &mut BatchResults,
    ) -> Result<(), WorkerError> {
        let failed_at: Vec<usize> =
            results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| i).collect();
        if failed_at.is_empty() {
            return Ok(());
        }
        self.count_fallback(FallbackReason::Error, failed_at.len());
        let retry: Vec<bytes::Bytes> = failed_at.iter().map(|&i| payloads[i].clone()).collect();
        let ran = run_model(fallback, retry, None, (Pace::OnTime, Some(Instant::now())))
            .await
            .map_err(|e| WorkerError::Failed { worker: self.kind.into(), source: e.into() })?;
        if let Some(Ran { results: again, .. }) = ran {
            for (i, r) in failed_at.into_iter().zip(again) {
                results[i] = match (&results[i], r) {
                    (Err(first), Err(second)) => Err(ItemError(format!("{first}; fallback: {second}"))),
                    (_, r) => r,
                };
            }
        }
        Ok(())
    }

    /// Publishes each item's events, then acks, naks or dead-letters its message as
    /// [`decide`] says.
    async fn settle_all(&self, batch: Vec<Message>, results: BatchResults, settled: &mut Settled) {
        let l = labels(&[("model", &self.model)]);
        for (msg, result) in batch.into_iter().zip(results) {
            let outcome = match &result {
                Ok(events) => match publish_events(&self.bus, &self.metrics, events).await {
                    Ok(()) => Outcome::Done,
                    Err(e) => {
                        tracing::warn!(kind = self.kind, error = %e, "cannot publish events; will retry");
                        Outcome::PublishFailed
                    }
                },
                Err(error) => {
                    self.metrics.inference_errors.get_or_create(&l).inc();
                    tracing::debug!(kind = self.kind, %error, delivered = delivered(&msg), "item failed");
                    Outcome::Failed(&error.0)
                }
            };
            let action = decide(outcome, delivered(&msg), &self.retry);
            match settle(&self.bus, self.kind, &msg, action, &self.retry).await {
                Settlement::Retrying => continue,
                Settlement::DeadLettered => {
                    self.metrics.dlq.get_or_create(&labels(&[("kind", self.kind)])).inc();
                }
                Settlement::Finished => {}
            }
            settled.add(&msg);
        }
    }
}
