//! The connection to NATS JetStream and the streams and buckets of the wire contract, created
//! idempotently with their bounds (per-subject limits, discard-old, ages, byte caps).

use async_nats::jetstream::{self, kv, stream};
use sightline_settings::NatsConfig;
use sightline_wire::Names;
use std::time::Duration;

/// The error NATS or JetStream gave, kept as the source.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        url: String,
        reason: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("JetStream {what}: {source}")]
    JetStream {
        what: String,
        #[source]
        source: Cause,
    },
}

/// Wraps a JetStream error with what was being done.
pub fn js_err<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> BusError {
    let what = what.into();
    move |e| BusError::JetStream { what, source: Box::new(e) }
}

#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub cfg: NatsConfig,
}

impl Bus {
    pub async fn connect(cfg: &NatsConfig) -> Result<Self, BusError> {
        let err = |reason: String| BusError::Connect { url: cfg.url.clone(), reason, source: None };
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .name("sightline")
                .retry_on_initial_connect()
                .max_reconnects(None)
                // A cluster's stream and bucket operations take longer than one server's.
                .request_timeout(Some(Duration::from_secs(10)))
                // A cluster: every server given, comma-separated (the client learns the rest).
                .connect(cfg.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>()),
        )
        .await
        .map_err(|_| err("no answer within 5 s (is nats-server running? `make services`)".into()))?
        .map_err(|e| BusError::Connect {
            url: cfg.url.clone(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        })?;
        // Wait until the connection is really up (retry_on_initial_connect returns at once).
        for _ in 0..50 {
            if client.connection_state() == async_nats::connection::State::Connected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(err("not connected after 5 s (is nats-server running? `make services`)".into()));
        }
        let js = jetstream::new(client.clone());
        Ok(Self { client, js, names: Names::new(&cfg.prefix), cfg: cfg.clone() })
    }

    /// Creates (or finds) every stream and bucket Sightline uses. On a cluster several nodes
    /// starting together contend for the meta leader and a request can time out, and a cluster
    /// just formed may not know its peers' resources yet ("no suitable peers for placement"; on a
    /// busy machine it took more than 13 s once, after the meta leader was elected): up to twenty
    /// tries over about 35 s.
    pub async fn ensure(&self) -> Result<(), BusError> {
        let mut attempt = 1;
        loop {
            match self.ensure_once().await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 20 => {
                    tracing::warn!(error = %e, attempt, "cannot create the streams and buckets yet; trying again");
                    tokio::time::sleep(Duration::from_millis((500 * attempt).min(2000))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ensure_once(&self) -> Result<(), BusError> {
        let c = &self.cfg;
        let n = &self.names;
        let work = |name: String, subject: String| stream::Config {
            name,
            subjects: vec![subject],
            max_messages_per_subject: c.work_max_msgs_per_subject,
            max_age: Duration::from_secs(c.work_max_age_s),
            max_bytes: c.work_max_bytes,
            discard: stream::DiscardPolicy::Old,
            storage: stream::StorageType::File,
            num_replicas: c.replicas,
            duplicate_window: Duration::from_secs(c.events_duplicate_window_s.min(c.work_max_age_s)),
            ..Default::default()
        };
        for cfg in [
            work(n.frames_stream(), n.frames_all()),
            work(n.audio_stream(), n.audio_all()),
            work(n.shots_stream(), n.shots_all()),
            stream::Config {
                name: n.events_stream(),
                subjects: vec![n.events_all()],
                max_age: Duration::from_secs(c.events_max_age_s),
                max_bytes: c.events_max_bytes,
                discard: stream::DiscardPolicy::Old,
                storage: stream::StorageType::File,
                num_replicas: c.replicas,
                duplicate_window: Duration::from_secs(c.events_duplicate_window_s),
                ..Default::default()
            },
            stream::Config {
                name: n.dlq_stream(),
                subjects: vec![n.dlq_all()],
                max_age: Duration::from_secs(c.events_max_age_s),
                max_bytes: (c.work_max_bytes / 4).max(1 << 20),
                discard: stream::DiscardPolicy::Old,
                storage: stream::StorageType::File,
                num_replicas: c.replicas,
                // The server's default, said explicitly (so the check below sees no change).
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            },
        ] {
            let name = cfg.name.clone();
            let what = format!("stream {name}");
            let mut stream = self.js.get_or_create_stream(cfg.clone()).await.map_err(js_err(&what))?;
            // A stream made by an older version keeps its settings; bring the duplicate window up
            // to date (what no-loss-no-duplicates rests on) without touching its messages.
            let have = stream.info().await.map_err(js_err(&what))?.config.duplicate_window;
            if have != cfg.duplicate_window {
                tracing::info!(stream = %name, from_s = have.as_secs(), to_s = cfg.duplicate_window.as_secs(), "updating the duplicate window");
                self.js.update_stream(cfg).await.map_err(js_err(&what))?;
            }
        }
        // Node announcements lapse a minute after a node stops heartbeating (dead nodes leave the
        // list by themselves; liveness itself is judged by the heartbeat's age).
        let buckets = [
            (n.registry_bucket(), Duration::ZERO),
            (n.status_bucket(), Duration::ZERO),
            (n.nodes_bucket(), Duration::from_secs(60)),
            (n.leases_bucket(), Duration::ZERO),
        ];
        for (bucket, max_age) in buckets {
            // An existing bucket is kept as it is (an update is a cluster-wide proposal).
            if self.js.get_key_value(&bucket).await.is_ok() {
                continue;
            }
            self.js
                .create_or_update_key_value(kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age,
                    storage: stream::StorageType::File,
                    num_replicas: c.replicas,
                    ..Default::default()
                })
                .await
                .map_err(js_err(format!("bucket {bucket}")))?;
        }
        Ok(())
    }

    pub async fn kv(&self, bucket: &str) -> Result<kv::Store, BusError> {
        self.js.get_key_value(bucket).await.map_err(js_err(format!("bucket {bucket}")))
    }

    /// Publishes with a message id (JetStream drops duplicates within its window) and waits for
    /// the server's acknowledgement.
    /// Returns the message's sequence in its stream.
    pub async fn publish(&self, subject: String, id: &str, payload: Vec<u8>) -> Result<u64, BusError> {
        let msg = jetstream::message::PublishMessage::build().payload(payload.into()).message_id(id);
        let ack =
            self.js.send_publish(subject.clone(), msg).await.map_err(js_err(format!("publish {subject}")))?;
        let ack = ack.await.map_err(js_err(format!("publish ack {subject}")))?;
        Ok(ack.sequence)
    }

    /// Publishes a sampled frame to its stream's work subject (message id: stream and media time).
    pub async fn publish_frame(&self, meta: &sightline_wire::FrameMeta, rgb: &[u8]) -> Result<u64, BusError> {
        self.publish(
            self.names.frames_subject(&meta.stream_id),
            &meta.msg_id(),
            sightline_wire::encode(meta, rgb),
        )
        .await
    }

    /// Deletes every stream and bucket of this prefix (tests clean up after themselves).
    pub async fn destroy(&self) {
        let n = &self.names;
        for s in [n.frames_stream(), n.audio_stream(), n.shots_stream(), n.events_stream(), n.dlq_stream()] {
            let _ = self.js.delete_stream(&s).await;
        }
        for b in [n.registry_bucket(), n.status_bucket(), n.nodes_bucket(), n.leases_bucket()] {
            let _ = self.js.delete_key_value(&b).await;
        }
    }
}
