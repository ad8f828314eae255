//! The ClickHouse event store: migrations applied at start, batched idempotent inserts.

use crate::rows::{DlqRow, EventRow, FrameRow, SqlFormat};
use clickhouse::Client;
use sightline_settings::ClickHouseConfig;
use sightline_wire::{Event, EventKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url}: {source}")]
    ClickHouse { url: String, source: clickhouse::error::Error },
    #[error("migration {file}: {reason}")]
    Migration { file: String, reason: String },
    #[error("the answer is larger than {max_bytes} bytes; narrow the query or add a LIMIT")]
    TooLarge { max_bytes: usize },
    #[error("Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
}

#[derive(Clone)]
pub struct EventStore {
    pub(crate) client: Client,
    /// The read-only user, for users' SQL.
    reader: Client,
    url: String,
}

impl EventStore {
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let client = Client::default()
            .with_url(&cfg.url)
            .with_user(&cfg.user)
            .with_password(&cfg.password)
            .with_database(&cfg.database);
        let reader = Client::default()
            .with_url(&cfg.url)
            .with_user(&cfg.reader_user)
            .with_password(&cfg.reader_password)
            .with_database(&cfg.database);
        Self { client, reader, url: cfg.url.clone() }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn err(&self) -> impl Fn(clickhouse::error::Error) -> StoreError + '_ {
        |source| StoreError::ClickHouse { url: self.url.clone(), source }
    }

    /// The server's version, which also proves it answers.
    pub async fn version(&self) -> Result<String, StoreError> {
        self.client.query("SELECT version()").fetch_one::<String>().await.map_err(self.err())
    }

    /// Inserts a batch: one INSERT into `events` (materialized views fan it out into the typed
    /// tables) and one into `frames` when the batch has frames. Redelivered events keep their id
    /// and sort key, so the ReplacingMergeTrees keep one copy; the sink also leaves out events it
    /// finds already stored ([`EventStore::stored_ids`]).
    pub async fn insert_events(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let frames: Vec<FrameRow> = events.iter().filter_map(FrameRow::from_event).collect();
        // Frames first: if this fails nothing of the batch is in `events`, which the sink's
        // redelivery check reads.
        let token = batch_token(events);
        if !frames.is_empty() {
            self.insert_rows_once("frames", &frames, &token).await?;
        }
        let rows: Vec<EventRow> = events.iter().map(EventRow::from).collect();
        self.insert_rows_once("events", &rows, &token).await
    }

    /// One INSERT with an insert deduplication token: ClickHouse drops a retry of the same batch
    /// (and what its materialized views would write).
    async fn insert_rows_once<R: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
        token: &str,
    ) -> Result<(), StoreError> {
        let mut insert = self
            .client
            .insert::<R>(table)
            .await
            .map_err(self.err())?
            .with_setting("insert_deduplication_token", format!("{table}-{token}"))
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1");
        for r in rows {
            insert.write(r).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// One INSERT of `rows` into `table`.
    pub async fn insert_rows<R: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<R>(table).await.map_err(self.err())?;
        for r in rows {
            insert.write(r).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Which of `ids` are already in `events`.
    pub async fn stored_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<String> = self
            .client
            .query("SELECT DISTINCT id FROM events WHERE id IN ?")
            .bind(ids)
            .fetch_all::<String>()
            .await
            .map_err(self.err())?;
        Ok(found.into_iter().collect())
    }

    /// Runs a user's query as the read-only user and returns the result in `format`. The server
    /// holds that user to `readonly = 1` and its limits (time, rows, bytes, memory), so no setting
    /// is sent: a read-only profile would refuse any.
    /// ClickHouse's own parse of a query (`EXPLAIN AST`, as the read-only user): one node a line.
    pub async fn explain_ast(&self, sql: &str) -> Result<String, StoreError> {
        let escaped = format!("EXPLAIN AST {}", sql.replace('?', "??"));
        let bytes: bytes::Bytes = self
            .reader
            .query(&escaped)
            .fetch_bytes("TSVRaw")
            .map_err(self.err())?
            .collect()
            .await
            .map_err(self.err())?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The answer is read as it streams in and refused past `max_bytes`.
    pub async fn query_readonly(
        &self,
        sql: &str,
        format: SqlFormat,
        max_bytes: usize,
    ) -> Result<bytes::Bytes, StoreError> {
        // `?` is the crate's bind placeholder; `??` is a literal question mark.
        let escaped = sql.replace('?', "??");
        let fmt = match format {
            SqlFormat::Json => "JSON",
            SqlFormat::Csv => "CSVWithNames",
        };
        let mut cursor = self.reader.query(&escaped).fetch_bytes(fmt).map_err(self.err())?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = cursor.next().await.map_err(self.err())? {
            if out.len() + chunk.len() > max_bytes {
                return Err(StoreError::TooLarge { max_bytes });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Recent dead letters, newest first.
    pub async fn dlq(&self, kind: Option<&str>, limit: u64) -> Result<Vec<DlqRow>, StoreError> {
        let mut q = match kind {
            Some(k) => self
                .client
                .query("SELECT ?fields FROM dlq FINAL WHERE kind = ? ORDER BY wall_time DESC LIMIT ?")
                .bind(k),
            None => self.client.query("SELECT ?fields FROM dlq FINAL ORDER BY wall_time DESC LIMIT ?"),
        };
        q = q.bind(limit);
        q.fetch_all::<DlqRow>().await.map_err(self.err())
    }

    /// Kept frames by event id.
    pub async fn frames_by_id(&self, ids: &[String]) -> Result<Vec<FrameRow>, StoreError> {
        self.client
            .query("SELECT ?fields FROM frames FINAL WHERE id IN ?")
            .bind(ids)
            .fetch_all::<FrameRow>()
            .await
            .map_err(self.err())
    }

    /// The last kept frame of a stream at or before `pts_ms`, for linking a moment to a picture.
    pub async fn frame_at(&self, stream_id: &str, pts_ms: i64) -> Result<Option<String>, StoreError> {
        self.client
            .query("SELECT id FROM frames WHERE stream_id = ? AND pts_ms <= ? ORDER BY pts_ms DESC LIMIT 1")
            .bind(stream_id)
            .bind(pts_ms)
            .fetch_optional::<String>()
            .await
            .map_err(self.err())
    }

    /// Events of one stream, deduplicated, in media-time order.
    pub async fn stream_events(&self, stream_id: &str) -> Result<Vec<EventRow>, StoreError> {
        self.events_of(stream_id, None, u64::MAX).await
    }

    /// Events of one stream, optionally of one kind, first `limit` in media-time order.
    pub async fn events_of(
        &self,
        stream_id: &str,
        kind: Option<EventKind>,
        limit: u64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let sql = match kind {
            Some(_) => {
                "SELECT ?fields FROM events FINAL WHERE stream_id = ? AND kind = ? ORDER BY pts_ms, kind LIMIT ?"
            }
            None => "SELECT ?fields FROM events FINAL WHERE stream_id = ? ORDER BY pts_ms, kind LIMIT ?",
        };
        let mut q = self.client.query(sql).bind(stream_id);
        if let Some(k) = kind {
            q = q.bind(k.as_str());
        }
        q.bind(limit).fetch_all::<EventRow>().await.map_err(self.err())
    }
}

/// A batch's identity: a hash of its event ids in order.
fn batch_token(events: &[Event]) -> String {
    let h = sightline_wire::stable_hash(events.iter().flat_map(|e| [e.id.as_bytes(), &[0u8][..]]));
    format!("{h:016x}-{}", events.len())
}
