//! The source check the gateway asks for when a stream is registered ([`Service::CheckSource`]):
//! ingest fetches the source once through the egress policy (pinned address, checked redirects)
//! and refuses a playlist over the configured limits or naming URIs that are not plain http(s).

use sightline_bus::{Bus, rpc};
use sightline_egress::{EgressConfig, PlaylistLimits};
use sightline_runtime::Backoff;
use sightline_settings::IngestConfig;
use sightline_wire::{CheckSourceReply, CheckSourceRequest, Service};
use std::time::Duration;

/// Playlists checked at once by one node.
const CONCURRENCY: usize = 8;

/// The egress policy and limits from the ingest configuration.
pub fn egress_config(cfg: &IngestConfig) -> EgressConfig {
    EgressConfig {
        allow: cfg.allow_list(),
        limits: PlaylistLimits {
            max_bytes: cfg.max_playlist_bytes as u64,
            max_segments: cfg.max_playlist_segments,
            max_variants: cfg.max_playlist_variants,
        },
        max_media_bytes: cfg.max_media_bytes,
        max_redirects: cfg.max_redirects,
    }
}

/// The URL policy again (whoever asks, nothing is fetched that the policy refuses), then the
/// playlist's limits.
async fn check(cfg: &IngestConfig, url: &str) -> CheckSourceReply {
    let url = match sightline_policy::validate_url(url, &cfg.allowed_schemes) {
        Ok(u) => u,
        Err(e) => return CheckSourceReply::Refused(e.to_string()),
    };
    if let Err(e) = sightline_policy::check_host(&url, &cfg.allow_list()).await {
        return CheckSourceReply::Refused(e.to_string());
    }
    if !matches!(url.scheme.as_str(), "http" | "https") {
        return CheckSourceReply::Accepted;
    }
    match sightline_egress::check_source(&egress_config(cfg), &url.url).await {
        Ok(()) => CheckSourceReply::Accepted,
        Err(reason) => CheckSourceReply::Refused(reason.to_string()),
    }
}

/// Answers playlist checks until the task is dropped; a lost subscription is renewed with backoff.
pub async fn serve_checks(bus: Bus, cfg: IngestConfig) {
    let retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let cfg = std::sync::Arc::new(cfg);
    for attempt in 1.. {
        let cfg = cfg.clone();
        let served =
            rpc::serve(bus.clone(), Service::CheckSource, CONCURRENCY, move |q: CheckSourceRequest| {
                let cfg = cfg.clone();
                async move { check(&cfg, &q.url).await }
            })
            .await;
        let delay = retry.delay(attempt);
        match served {
            Ok(()) => tracing::warn!(
                retry_in_ms = delay.as_millis() as u64,
                "source check service ended; resubscribing"
            ),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "source check service failed")
            }
        }
        tokio::time::sleep(delay).await;
    }
}
