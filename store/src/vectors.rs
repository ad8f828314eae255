//! Redis 8 vector sets. For now: connecting and proving the server has them (VADD/VSIM).

use crate::StoreError;
use redis::aio::ConnectionManager;

#[derive(Clone)]
pub struct VectorStore {
    conn: ConnectionManager,
    url: String,
}

impl VectorStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let err = |reason: String| StoreError::Redis { url: url.to_string(), reason };
        let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
        let conn = tokio::time::timeout(std::time::Duration::from_secs(5), ConnectionManager::new(client))
            .await
            .map_err(|_| err("no answer within 5 s".into()))?
            .map_err(|e| err(e.to_string()))?;
        Ok(Self { conn, url: url.to_string() })
    }

    /// Adds two vectors to a scratch set, asks for the nearest, removes the set. Proves vector
    /// sets work end to end; returns the server version.
    pub async fn probe(&self) -> Result<String, StoreError> {
        let err = |e: redis::RedisError| StoreError::Redis { url: self.url.clone(), reason: e.to_string() };
        let mut c = self.conn.clone();
        let key = format!("sightline:probe:{}", std::process::id());
        for (name, v) in [("a", [1.0f32, 0.0, 0.0]), ("b", [0.0, 1.0, 0.0])] {
            redis::cmd("VADD")
                .arg(&key)
                .arg("VALUES")
                .arg(3)
                .arg(v[0])
                .arg(v[1])
                .arg(v[2])
                .arg(name)
                .query_async::<i64>(&mut c)
                .await
                .map_err(err)?;
        }
        let nearest: Vec<String> = redis::cmd("VSIM")
            .arg(&key)
            .arg("VALUES")
            .arg(3)
            .arg(0.9f32)
            .arg(0.1f32)
            .arg(0.0f32)
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(err)?;
        redis::cmd("DEL").arg(&key).query_async::<i64>(&mut c).await.map_err(err)?;
        if nearest.first().map(String::as_str) != Some("a") {
            return Err(StoreError::Redis {
                url: self.url.clone(),
                reason: format!("VSIM answered {nearest:?}, expected [a]"),
            });
        }
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await.map_err(err)?;
        Ok(info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string())
    }
}
