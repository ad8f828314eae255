//! Routes and handlers.

use crate::error::ApiError;
use crate::{feed, streams};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sightline_bus::{Bus, Registry};
use sightline_policy::redact_secrets;
use sightline_settings::Config;
use sightline_store::EventStore;
use sightline_telemetry::Metrics;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub bus: Bus,
    pub registry: Registry,
    pub store: EventStore,
    pub metrics: Arc<Metrics>,
    /// Vector store and text embedder, connected on first use.
    pub search: Arc<crate::search::SearchState>,
    /// API keys and rate limits.
    pub auth: Arc<crate::auth::Auth>,
    /// Set when the gateway shuts down: long-lived feeds end so the shutdown can complete.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Open feeds and running SQL queries per caller, bounded.
    pub feeds: Arc<crate::feed_guard::Slots>,
    pub queries: Arc<crate::feed_guard::Slots>,
}

impl AppState {
    /// The gateway's state over a running node's bus, registry and store. Fails on bad API keys,
    /// and refuses an open API (no keys) on anything but a loopback address.
    pub fn new(
        cfg: &Config,
        bus: Bus,
        registry: Registry,
        store: EventStore,
        metrics: Arc<Metrics>,
    ) -> Result<Self, crate::auth::KeyError> {
        let g = &cfg.gateway;
        let auth = crate::auth::Auth::new(&g.api_keys, g.rate_limit_per_s, g.rate_limit_burst)?;
        if !auth.enabled() {
            if !crate::auth::is_loopback(&g.listen) {
                return Err(crate::auth::KeyError::Open { listen: g.listen.clone() });
            }
            tracing::warn!("no API keys configured (gateway.api_keys): the API is open to this machine");
        }
        Ok(Self {
            cfg: Arc::new(cfg.clone()),
            bus,
            registry,
            store,
            metrics,
            search: Default::default(),
            auth: Arc::new(auth),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
            feeds: Arc::new(crate::feed_guard::Slots::new(
                "feeds",
                "too_many_feeds",
                "gateway.max_feeds",
                "gateway.max_feeds_per_key",
            )),
            queries: Arc::new(crate::feed_guard::Slots::new(
                "SQL queries",
                "too_many_queries",
                "gateway.sql_max_concurrent",
                "gateway.sql_max_concurrent_per_key",
            )),
        })
    }

    /// Resolves when the gateway starts shutting down.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// Longest wait for open connections once shutdown began.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn router(state: AppState) -> Router {
    let limit = state.cfg.gateway.max_body_bytes;
    Router::new()
        .route("/", get(dashboard_index))
        .route("/dashboard/{file}", get(dashboard_file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/v1/streams", get(streams::list_streams).post(streams::create_stream))
        .route("/v1/streams/{id}", get(streams::get_stream).delete(streams::delete_stream))
        .route("/v1/streams/{id}/pause", axum::routing::post(streams::pause_stream))
        .route("/v1/streams/{id}/resume", axum::routing::post(streams::resume_stream))
        .route("/v1/streams/{id}/events", get(streams::stream_events))
        .route("/v1/streams/{id}/source", get(streams::stream_source))
        .route("/v1/feed", get(feed::feed))
        .route("/v1/feed/sse", get(feed::feed_sse))
        .route("/v1/search", get(crate::search::search))
        .route("/v1/frames/{id}", get(crate::search::frame))
        .route("/v1/frames/{id}/similar", get(crate::search::similar_frames))
        .route("/v1/frames/{id}/image", get(crate::search::frame_image))
        .route("/v1/streams/{id}/thumbnail", get(crate::search::stream_thumbnail))
        .route("/v1/sql", axum::routing::post(crate::sql::sql))
        .route("/v1/dlq", get(crate::sql::dlq))
        .route("/v1/nodes", get(crate::nodes::list_nodes))
        .route("/v1/nodes/{id}/drain", axum::routing::post(crate::nodes::drain_node))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here; see /openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::auth::middleware))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let closing = state.closing.clone();
    let closed = state.closed();
    let signal = async move {
        shutdown.await;
        let _ = closing.send(true); // feeds end, in-flight requests finish
    };
    let server =
        axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(signal);
    tokio::select! {
        r = server.into_future() => r,
        _ = async { closed.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("connections still open {} s after shutdown began; closing them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    }
}

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// How close each sink is to losing events to the events stream's limits: `ok`, or `degraded`
/// with the reason (unsunk events above 80 % of the byte or age limit, or some already discarded).
async fn events_retention(st: &AppState) -> (bool, serde_json::Value) {
    use sightline_bus::retention::{WARN_FILL, events_retention};
    let mut degraded = false;
    let mut out = serde_json::Map::new();
    for (sink, role) in [("clickhouse", "sink_clickhouse"), ("redis", "sink_vectors")] {
        let consumer = st.bus.names.consumer(role);
        let v = match events_retention(&st.bus, &consumer).await {
            Ok(r) => {
                let state = if r.discarded_unsunk > 0 {
                    degraded = true;
                    format!(
                        "degraded: {} events were discarded by the events stream before this sink had them",
                        r.discarded_unsunk
                    )
                } else if r.fill >= WARN_FILL {
                    degraded = true;
                    format!(
                        "degraded: {} unsunk events take {:.0} % of the events stream's limit; at 100 % the oldest are discarded",
                        r.unsunk,
                        r.fill * 100.0
                    )
                } else {
                    "ok".to_string()
                };
                serde_json::json!({ "state": state, "unsunk": r.unsunk, "fill": r.fill, "discarded_unsunk": r.discarded_unsunk })
            }
            Err(_) => serde_json::json!({ "state": "no sink consumer yet" }),
        };
        out.insert(sink.to_string(), v);
    }
    (degraded, serde_json::Value::Object(out))
}

/// Ready: NATS connected, ClickHouse and Redis answering. `status` is `degraded` (still 200) when
/// the events stream is close to discarding, or has discarded, events a sink has not written.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Object), (status = 503, description = "what is not reachable", body = Object)))]
async fn readyz(State(st): State<AppState>) -> Response {
    let nats = st.bus.client.connection_state() == async_nats::connection::State::Connected;
    // No answer here carries a credential: service URLs are shown redacted.
    let hide = |e: String| redact_secrets(&redact_secrets(&e, &st.cfg.redis.url), &st.cfg.clickhouse.url);
    let clickhouse = st.store.version().await.map_err(|e| hide(e.to_string()));
    let redis = match st.search.vectors(&st.cfg.redis.url).await {
        Ok(v) => v.ping().await.map_err(|e| hide(e.to_string())),
        Err(e) => Err(hide(e.message)),
    };
    let ok = nats && clickhouse.is_ok() && redis.is_ok();
    let (degraded, events) =
        if nats { events_retention(&st).await } else { (false, serde_json::Value::Null) };
    let overall = match (ok, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    let body = serde_json::json!({
        "status": overall,
        "events": events,
        "nats": if nats { "ok".to_string() } else { "disconnected".to_string() },
        "clickhouse": match &clickhouse { Ok(v) => format!("ok ({v})"), Err(e) => e.clone() },
        "redis": match &redis { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Prometheus / OpenMetrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        st.metrics.encode(),
    )
        .into_response()
}

async fn dashboard_index(State(st): State<AppState>) -> Response {
    dashboard_file(State(st), Path("index.html".to_string())).await
}

async fn dashboard_file(State(st): State<AppState>, Path(file): Path<String>) -> Response {
    if file.contains('/') || file.contains("..") || file.starts_with('.') {
        return ApiError::not_found("no such file").into_response();
    }
    let path = st.cfg.gateway.dashboard_dir.join(&file);
    let ctype = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, ctype)], bytes).into_response(),
        Err(_) => ApiError::not_found(format!("dashboard file {file} not found")).into_response(),
    }
}

pub(crate) use sightline_wire::now_ms;
