//! Who may hold a live feed open, and how many: a browser page from another site may not (its
//! `Origin` must be this gateway's own or a configured one), and each caller, and everyone
//! together, has a bounded number of feeds (and of SQL queries running). The checks run before
//! the work starts.

use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Who made a request, as the auth middleware saw it (`key:NAME`, or `ip:ADDR` with no keys).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// A websocket or event-stream request from a page must come from this gateway's own origin or
/// one in `gateway.allowed_origins`. Clients that are not browsers send no `Origin` and pass.
pub fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let own = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/')) == Some(host);
    if own || allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden_origin",
        format!("feeds are not served to pages from {origin}; add it to gateway.allowed_origins to allow it"),
    ))
}

/// Long-lived or costly requests open at once (feeds, SQL queries), per caller and in all.
#[derive(Debug)]
pub struct Slots {
    /// What is counted, and the settings that bound it, for the 429's message.
    what: &'static str,
    code: &'static str,
    total_key: &'static str,
    per_caller_key: &'static str,
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl Slots {
    pub fn new(
        what: &'static str,
        code: &'static str,
        total_key: &'static str,
        per_caller_key: &'static str,
    ) -> Self {
        Self { what, code, total_key, per_caller_key, open: Mutex::default() }
    }

    /// A slot for `caller`, held until the returned guard drops; 429 when a cap is reached.
    pub fn take(self: &Arc<Self>, caller: &str, total: usize, per_caller: usize) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.1.get(caller).copied().unwrap_or(0);
        if open.0 >= total || mine >= per_caller {
            let why = if open.0 >= total {
                format!("{total} {} are open, the most this gateway serves ({})", self.what, self.total_key)
            } else {
                format!(
                    "{per_caller} {} are open for this key, the most allowed ({})",
                    self.what, self.per_caller_key
                )
            };
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, self.code, why));
        }
        open.0 += 1;
        *open.1.entry(caller.to_string()).or_default() += 1;
        Ok(Slot { slots: self.clone(), caller: caller.to_string() })
    }
}

/// A held slot; dropping it frees the slot.
pub struct Slot {
    slots: Arc<Slots>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_own_or_allowed_origins_pass() {
        let allowed = vec!["https://ops.example".to_string()];
        assert!(check_origin(&headers(None, "gw:8080"), &[]).is_ok(), "no Origin: not a browser");
        assert!(check_origin(&headers(Some("http://gw:8080"), "gw:8080"), &[]).is_ok());
        assert!(check_origin(&headers(Some("https://ops.example"), "gw:8080"), &allowed).is_ok());
        for foreign in ["http://evil.example", "http://gw:8081", "null", "http://gw:8080.evil.example"] {
            let err = check_origin(&headers(Some(foreign), "gw:8080"), &allowed).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{foreign}");
        }
    }

    #[test]
    fn slots_are_capped_per_caller_and_in_all_and_freed_on_drop() {
        let slots = Arc::new(Slots::new("feeds", "too_many_feeds", "max", "max_per_key"));
        let a1 = slots.take("key:a", 3, 2).unwrap();
        let _a2 = slots.take("key:a", 3, 2).unwrap();
        assert!(slots.take("key:a", 3, 2).is_err(), "per caller");
        let _b1 = slots.take("key:b", 3, 2).unwrap();
        assert!(slots.take("key:c", 3, 2).is_err(), "in all");
        drop(a1);
        assert!(slots.take("key:c", 3, 2).is_ok(), "a closed feed frees its slot");
    }
}
