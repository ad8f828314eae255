//! Who may hold a live feed open, and how many: a browser page from another site may not (its
//! `Origin` must be this gateway's own or a configured one), and each caller, and everyone
//! together, has a bounded number of feeds. Both checks run before a feed opens.

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

/// Open feeds, per caller and in all.
#[derive(Debug, Default)]
pub struct FeedSlots {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl FeedSlots {
    /// A slot for `caller`, held until the returned guard drops; 429 when a cap is reached.
    pub fn take(
        self: &Arc<Self>,
        caller: &str,
        total: usize,
        per_caller: usize,
    ) -> Result<FeedSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.1.get(caller).copied().unwrap_or(0);
        if open.0 >= total || mine >= per_caller {
            let why = if open.0 >= total {
                format!("{total} feeds are open, the most this gateway serves (gateway.max_feeds)")
            } else {
                format!(
                    "{per_caller} feeds are open for this key, the most allowed (gateway.max_feeds_per_key)"
                )
            };
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_feeds", why));
        }
        open.0 += 1;
        *open.1.entry(caller.to_string()).or_default() += 1;
        Ok(FeedSlot { slots: self.clone(), caller: caller.to_string() })
    }
}

/// An open feed's slot; dropping it frees the slot.
pub struct FeedSlot {
    slots: Arc<FeedSlots>,
    caller: String,
}

impl Drop for FeedSlot {
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
        let slots = Arc::new(FeedSlots::default());
        let a1 = slots.take("key:a", 3, 2).unwrap();
        let _a2 = slots.take("key:a", 3, 2).unwrap();
        assert!(slots.take("key:a", 3, 2).is_err(), "per caller");
        let _b1 = slots.take("key:b", 3, 2).unwrap();
        assert!(slots.take("key:c", 3, 2).is_err(), "in all");
        drop(a1);
        assert!(slots.take("key:c", 3, 2).is_ok(), "a closed feed frees its slot");
    }
}
