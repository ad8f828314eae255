//! Redis 8 vector sets: one set per vector space, the event id as element, JSON attributes that
//! `VSIM … FILTER` can test, and a time index (a sorted set per vector set, scored by wall-clock
//! milliseconds) so retention can remove old elements without scanning the set.

use crate::StoreError;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sightline_settings::Quantization;

#[derive(Clone)]
pub struct VectorStore {
    conn: ConnectionManager,
    url: String,
}

/// What each element carries besides its vector; `VSIM` filters test these fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorAttrs {
    pub stream: String,
    pub kind: String,
    pub pts_ms: i64,
    pub wall_ms: i64,
    /// A snippet of the text that was embedded (empty for frames).
    #[serde(default)]
    pub text: String,
    /// A keyframe (frames set only).
    #[serde(default)]
    pub keyframe: bool,
}

/// One element to add.
#[derive(Debug, Clone)]
pub struct VectorItem {
    pub id: String,
    pub vector: Vec<f32>,
    pub attrs: VectorAttrs,
}

/// A search hit: element id, VSIM score ((1 + cosine) / 2), and its attributes when present.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub attrs: Option<VectorAttrs>,
}

/// What to compare with: a vector, or an element already in the set.
pub enum Query<'a> {
    Vector(&'a [f32]),
    Element(&'a str),
}

fn fp32_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A time index key of a vector set.
fn time_key(set: &str) -> String {
    format!("{set}:by_time")
}

/// Quotes a string for a `FILTER` expression.
pub fn filter_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl VectorStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let err = |reason: String| StoreError::Redis { url: url.to_string(), reason };
        let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
            .set_response_timeout(Some(std::time::Duration::from_secs(10)))
            .set_number_of_retries(2)
            .set_max_delay(std::time::Duration::from_secs(2));
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| err("no answer within 5 s".into()))?
        .map_err(|e| err(e.to_string()))?;
        Ok(Self { conn, url: url.to_string() })
    }

    fn err(&self) -> impl Fn(redis::RedisError) -> StoreError + '_ {
        |e| StoreError::Redis { url: self.url.clone(), reason: e.to_string() }
    }

    /// Adds (or replaces: same id, same element) each item with its attributes, and indexes it by
    /// time, in one pipelined round trip.
    pub async fn add(&self, set: &str, items: &[VectorItem], quant: Quantization) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let quant = match quant {
            Quantization::Noquant => "NOQUANT",
            Quantization::Bin => "BIN",
            Quantization::Q8 => "Q8",
        };
        let mut pipe = redis::pipe();
        for it in items {
            let attrs = serde_json::to_string(&it.attrs).expect("attributes serialise");
            pipe.cmd("VADD")
                .arg(set)
                .arg("FP32")
                .arg(fp32_blob(&it.vector))
                .arg(&it.id)
                .arg(quant)
                .arg("SETATTR")
                .arg(attrs)
                .ignore();
            pipe.cmd("ZADD").arg(time_key(set)).arg(it.attrs.wall_ms).arg(&it.id).ignore();
        }
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c).await.map_err(self.err())
    }

    /// The `k` nearest elements, best first, with attributes. `filter` is a VSIM filter
    /// expression over the attributes (e.g. `.stream == "a" and .pts_ms > 5000`).
    pub async fn similar(
        &self,
        set: &str,
        query: Query<'_>,
        k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<Hit>, StoreError> {
        let mut cmd = redis::cmd("VSIM");
        cmd.arg(set);
        match query {
            Query::Vector(v) => cmd.arg("FP32").arg(fp32_blob(v)),
            Query::Element(id) => cmd.arg("ELE").arg(id),
        };
        cmd.arg("WITHSCORES").arg("COUNT").arg(k.max(1));
        if let Some(f) = filter {
            // A filter discards candidates: look at more of them so k results still come back.
            cmd.arg("FILTER").arg(f).arg("FILTER-EF").arg((k * 20).max(500));
        }
        let mut c = self.conn.clone();
        let reply: redis::Value = match cmd.query_async(&mut c).await {
            Ok(v) => v,
            // A set that does not exist yet, or an element that is not in it, has no neighbours.
            Err(e) if e.to_string().to_lowercase().contains("element not found") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.err()(e)),
        };
        let pairs = parse_scored(reply);
        let attrs = self.attrs(set, &pairs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()).await?;
        Ok(pairs.into_iter().zip(attrs).map(|((id, score), attrs)| Hit { id, score, attrs }).collect())
    }

    /// Attributes of each element (None for elements without, or not in the set).
    pub async fn attrs(&self, set: &str, ids: &[String]) -> Result<Vec<Option<VectorAttrs>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("VGETATTR").arg(set).arg(id);
        }
        let mut c = self.conn.clone();
        let raw: Vec<Option<String>> = pipe.query_async(&mut c).await.map_err(self.err())?;
        Ok(raw.into_iter().map(|a| a.and_then(|s| serde_json::from_str(&s).ok())).collect())
    }

    /// The stored (dequantised) vector of an element.
    pub async fn vector(&self, set: &str, id: &str) -> Result<Option<Vec<f32>>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<Vec<f32>> =
            redis::cmd("VEMB").arg(set).arg(id).query_async(&mut c).await.map_err(self.err())?;
        Ok(v.filter(|v| !v.is_empty()))
    }

    /// Number of elements.
    pub async fn len(&self, set: &str) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("VCARD").arg(set).query_async(&mut c).await.map_err(self.err())
    }

    /// Removes up to `limit` elements added before `cutoff_wall_ms`; returns how many.
    pub async fn remove_older_than(
        &self,
        set: &str,
        cutoff_wall_ms: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut c = self.conn.clone();
        let old: Vec<String> = redis::cmd("ZRANGE")
            .arg(time_key(set))
            .arg("-inf")
            .arg(format!("({cutoff_wall_ms}"))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut c)
            .await
            .map_err(self.err())?;
        if old.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for id in &old {
            pipe.cmd("VREM").arg(set).arg(id).ignore();
        }
        pipe.cmd("ZREM").arg(time_key(set)).arg(&old).ignore();
        pipe.query_async::<()>(&mut c).await.map_err(self.err())?;
        Ok(old.len())
    }

    /// Deletes a set and its time index.
    pub async fn drop_set(&self, set: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("DEL").arg(set).arg(time_key(set)).query_async::<i64>(&mut c).await.map_err(self.err())?;
        Ok(())
    }

    /// Asks Redis to rewrite its append-only file in the background. After bulk work that was
    /// deleted again (the store bench adds and drops 200k vectors), this keeps the next restart
    /// from replaying every `VADD` into a graph only to delete it.
    pub async fn compact_log(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        match redis::cmd("BGREWRITEAOF").query_async::<redis::Value>(&mut c).await {
            // Already rewriting (or a save in progress, when it is scheduled instead) is fine.
            Err(e) if e.to_string().contains("in progress") => Ok(()),
            r => r.map(|_| ()).map_err(self.err()),
        }
    }

    /// Stores small binary values (thumbnails) with an expiry (0: none), pipelined.
    pub async fn put_blobs(&self, items: &[(String, Vec<u8>)], ttl_s: u64) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (k, v) in items {
            let cmd = pipe.cmd("SET").arg(k).arg(v.as_slice());
            if ttl_s > 0 {
                cmd.arg("EX").arg(ttl_s);
            }
            cmd.ignore();
        }
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c).await.map_err(self.err())
    }

    pub async fn get_blob(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("GET").arg(key).query_async(&mut c).await.map_err(self.err())
    }

    /// `PING`, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut c).await.map_err(self.err())?;
        Ok(())
    }

    /// Adds two vectors to a scratch set, asks for the nearest, removes the set. Proves vector
    /// sets work end to end; returns the server version.
    pub async fn probe(&self) -> Result<String, StoreError> {
        let key = format!("sightline:probe:{}", std::process::id());
        let item = |id: &str, v: Vec<f32>| VectorItem {
            id: id.into(),
            vector: v,
            attrs: VectorAttrs {
                stream: "probe".into(),
                kind: "probe".into(),
                pts_ms: 0,
                wall_ms: 0,
                text: String::new(),
                keyframe: false,
            },
        };
        self.add(&key, &[item("a", vec![1.0, 0.0, 0.0]), item("b", vec![0.0, 1.0, 0.0])], Quantization::Q8)
            .await?;
        let nearest = self.similar(&key, Query::Vector(&[0.9, 0.1, 0.0]), 1, None).await?;
        self.drop_set(&key).await?;
        if nearest.first().map(|h| h.id.as_str()) != Some("a") {
            return Err(StoreError::Redis {
                url: self.url.clone(),
                reason: format!("VSIM answered {nearest:?}, expected [a]"),
            });
        }
        let mut c = self.conn.clone();
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await.map_err(self.err())?;
        Ok(info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string())
    }
}

/// `VSIM … WITHSCORES` answers a flat array (RESP2) or a map (RESP3) of element → score.
fn parse_scored(v: redis::Value) -> Vec<(String, f32)> {
    use redis::Value as V;
    let text = |v: &V| match v {
        V::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        V::SimpleString(s) => s.clone(),
        V::Double(d) => d.to_string(),
        V::Int(i) => i.to_string(),
        _ => String::new(),
    };
    match v {
        V::Array(items) => {
            items.chunks_exact(2).map(|p| (text(&p[0]), text(&p[1]).parse().unwrap_or(0.0))).collect()
        }
        V::Map(pairs) => pairs.iter().map(|(k, s)| (text(k), text(s).parse().unwrap_or(0.0))).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_strings_are_quoted() {
        assert_eq!(filter_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn scored_replies_parse() {
        use redis::Value as V;
        let v = V::Array(vec![
            V::BulkString(b"x".to_vec()),
            V::BulkString(b"0.5".to_vec()),
            V::BulkString(b"y".to_vec()),
            V::BulkString(b"0.25".to_vec()),
        ]);
        assert_eq!(parse_scored(v), vec![("x".to_string(), 0.5), ("y".to_string(), 0.25)]);
    }
}
