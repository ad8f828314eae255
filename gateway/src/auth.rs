//! API keys and rate limits. Keys are configured as SHA-256 hashes with a scope: `read` (every
//! GET, search, SQL, the feeds) or `admin` (also creating, deleting, pausing and resuming
//! streams). A key comes as `Authorization: Bearer KEY`, or as `?access_token=KEY` where a browser
//! cannot set headers (websocket, server-sent events). Each key (or client address, while no keys
//! are configured) has a token bucket; an empty bucket answers 429 with `Retry-After`.

use crate::error::ApiError;
use crate::routes::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sightline_settings::ApiKeyConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

pub use sightline_settings::Scope;

/// Most buckets kept; past this, idle ones are forgotten.
const MAX_BUCKETS: usize = 10_000;

pub struct Auth {
    keys: Vec<(String, [u8; 32], Scope)>,
    rate_per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// API keys the gateway cannot start with.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("gateway.api_keys `{name}`: sha256 must be 64 hex digits")]
    BadHash { name: String },
    #[error(
        "no API keys are configured (gateway.api_keys) and gateway.listen is `{listen}`, reachable from \
         other machines: add a key, or listen on 127.0.0.1 only"
    )]
    Open { listen: String },
}

/// Whether a listen address (`host:port`) only accepts connections from this machine.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen);
    host.eq_ignore_ascii_case("localhost")
}

impl Auth {
    pub fn new(keys: &[ApiKeyConfig], rate_per_s: f64, burst: u32) -> Result<Self, KeyError> {
        let mut parsed = Vec::new();
        for k in keys {
            let hash = parse_hex32(&k.sha256.to_ascii_lowercase())
                .ok_or_else(|| KeyError::BadHash { name: k.name.clone() })?;
            parsed.push((k.name.clone(), hash, k.scope));
        }
        Ok(Self { keys: parsed, rate_per_s, burst: burst.max(1) as f64, buckets: Mutex::new(HashMap::new()) })
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The key's name and scope, comparing every configured hash in full (no early exit).
    fn lookup(&self, key: &str) -> Option<(&str, Scope)> {
        let h: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for (name, want, scope) in &self.keys {
            let diff = h.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some((name.as_str(), *scope));
            }
        }
        found
    }

    /// Takes a token from `who`'s bucket; `Err(seconds)` to wait when it is empty.
    fn take(&self, who: &str) -> Result<(), u64> {
        if self.rate_per_s <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.len() >= MAX_BUCKETS && !b.contains_key(who) {
            let burst = self.burst;
            let rate = self.rate_per_s;
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
            if b.len() >= MAX_BUCKETS {
                b.clear();
            }
        }
        let (tokens, at) = b.entry(who.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate_per_s).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate_per_s).ceil().max(1.0) as u64)
        }
    }
}

/// The scope a request needs, or None for public endpoints.
fn required(method: &Method, path: &str) -> Option<Scope> {
    if !path.starts_with("/v1/") {
        return None; // health, metrics, dashboard, OpenAPI document
    }
    let admin = (path == "/v1/streams" && method == Method::POST)
        || (path.starts_with("/v1/streams/") && (method == Method::DELETE || method == Method::POST))
        || (path.starts_with("/v1/nodes/") && method == Method::POST)
        // The stream's URL whole, credentials included.
        || (path.starts_with("/v1/streams/") && path.ends_with("/source"));
    Some(if admin { Scope::Admin } else { Scope::Read })
}

fn bearer(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return h.strip_prefix("Bearer ").map(|k| k.trim().to_string());
    }
    // Only the feeds take the key in the URL (browsers cannot set headers on websockets or
    // EventSource); anywhere else a key in a URL would end up in logs and histories.
    if !req.uri().path().starts_with("/v1/feed") {
        return None;
    }
    // Decoded as any query string is (percent escapes, `+`), by axum's own parser.
    let query = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(req.uri());
    query.ok().and_then(|q| q.0.get("access_token").cloned())
}

pub async fn middleware(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(need) = required(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let auth = &st.auth;
    let who = if auth.enabled() {
        let Some(key) = bearer(&req) else {
            return with_challenge(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an API key is required: `Authorization: Bearer KEY` (or `?access_token=KEY` for feeds)",
            ));
        };
        let Some((name, scope)) = auth.lookup(&key) else {
            return with_challenge(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the API key is not valid",
            ));
        };
        if scope < need {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("the key `{name}` is read-only; this needs an admin key"),
            )
            .into_response();
        }
        format!("key:{name}")
    } else {
        let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        format!("ip:{}", ip.unwrap_or_default())
    };
    if let Err(wait) = auth.take(&who) {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {wait} s (limit {} per second)", auth.rate_per_s),
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    req.extensions_mut().insert(crate::feed_guard::Caller(who));
    next.run(req).await
}

fn with_challenge(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, scope: Scope) -> ApiKeyConfig {
        ApiKeyConfig { name: name.into(), sha256: sha256_hex(secret), scope }
    }

    #[test]
    fn keys_scopes_and_buckets() {
        let a =
            Auth::new(&[key("ro", "r-secret", Scope::Read), key("adm", "a-secret", Scope::Admin)], 1.0, 2)
                .unwrap();
        assert_eq!(a.lookup("r-secret"), Some(("ro", Scope::Read)));
        assert_eq!(a.lookup("a-secret"), Some(("adm", Scope::Admin)));
        assert_eq!(a.lookup("nope"), None);
        assert_eq!(required(&Method::POST, "/v1/streams"), Some(Scope::Admin));
        assert_eq!(required(&Method::POST, "/v1/streams/x/pause"), Some(Scope::Admin));
        assert_eq!(required(&Method::POST, "/v1/sql"), Some(Scope::Read));
        assert_eq!(required(&Method::GET, "/v1/streams"), Some(Scope::Read));
        assert_eq!(required(&Method::GET, "/v1/streams/x"), Some(Scope::Read));
        assert_eq!(required(&Method::GET, "/v1/streams/x/source"), Some(Scope::Admin));
        assert_eq!(required(&Method::GET, "/healthz"), None);
        assert!(a.take("k").is_ok() && a.take("k").is_ok());
        assert_eq!(a.take("k"), Err(1));
        assert!(a.take("other").is_ok());
        assert!(
            Auth::new(&[ApiKeyConfig { name: "x".into(), sha256: "zz".into(), scope: Scope::Read }], 1.0, 1)
                .is_err()
        );
        for (listen, loopback) in [
            ("127.0.0.1:8080", true),
            ("[::1]:80", true),
            ("localhost:8080", true),
            ("0.0.0.0:8080", false),
            ("[::]:8080", false),
            ("10.0.0.5:8080", false),
            ("gateway.internal:8080", false),
        ] {
            assert_eq!(is_loopback(listen), loopback, "{listen}");
        }
        // An unknown scope never gets this far: the configuration refuses it.
        let bad = "[gateway]\napi_keys = [{ name = \"x\", sha256 = \"00\", scope = \"root\" }]\n";
        let err = toml::from_str::<sightline_settings::Config>(bad).unwrap_err().to_string();
        assert!(err.contains("root") && err.contains("admin"), "{err}");
    }
}
