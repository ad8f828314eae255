//! Routes and handlers.

use crate::error::ApiError;
use crate::feed;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sightline_actors::{Bus, Metrics, Registry, StreamSpec, StreamView};
use sightline_settings::Config;
use sightline_store::EventStore;
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
}

pub fn router(state: AppState) -> Router {
    let limit = state.cfg.gateway.max_body_bytes;
    Router::new()
        .route("/", get(dashboard_index))
        .route("/dashboard/{file}", get(dashboard_file))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/streams", get(list_streams).post(create_stream))
        .route("/v1/streams/{id}", get(get_stream).delete(delete_stream))
        .route("/v1/streams/{id}/events", get(stream_events))
        .route("/v1/feed", get(feed::feed))
        .route("/v1/search", get(crate::search::search))
        .route("/v1/frames/{id}", get(crate::search::frame))
        .route("/v1/frames/{id}/similar", get(crate::search::similar_frames))
        .route("/v1/sql", axum::routing::post(crate::sql::sql))
        .route("/v1/dlq", get(crate::sql::dlq))
        .fallback(|| async { ApiError::not_found("no such endpoint; see the README's API section") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateStream {
    url: String,
    #[serde(default)]
    name: Option<String>,
    /// Client-chosen id; makes creation idempotent (the name does too).
    #[serde(default)]
    id: Option<String>,
}

/// A request body that could not be read: too large (413) or broken.
pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_body" };
    ApiError::new(status, code, format!("{} (limit {limit} bytes)", e.body_text()))
}

/// A stable id for a name, so two creates with the same name race to the same registry key.
fn id_for_name(name: &str) -> String {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("n{h:016x}")
}

async fn create_stream(
    State(st): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<StreamView>), ApiError> {
    let body = body.map_err(|e| body_error(e, st.cfg.gateway.max_body_bytes))?;
    let req: CreateStream = serde_json::from_slice(&body).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request(
                "invalid_field",
                format!("request body: {e}; expected {{\"url\": \"...\", \"name\": \"...\"}}"),
            )
        } else {
            ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}"))
        }
    })?;
    let url = sightline_streams::validate_url(&req.url, &st.cfg.ingest.allowed_schemes)
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    sightline_streams::check_host(&url, st.cfg.ingest.allow_private_hosts)
        .await
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    let limits = sightline_streams::playlist::PlaylistLimits {
        max_bytes: st.cfg.ingest.max_playlist_bytes,
        max_segments: st.cfg.ingest.max_playlist_segments,
        max_variants: st.cfg.ingest.max_playlist_variants,
    };
    sightline_streams::playlist::check_playlist(&url.url, &limits)
        .await
        .map_err(|e| ApiError::bad_request("invalid_playlist", e.to_string()))?;
    if let Some(id) = &req.id {
        check_id(id)?;
    }
    let name = req.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if let Some(n) = &name {
        if n.len() > 200 || n.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_name",
                "name must be at most 200 printable characters",
            ));
        }
    }
    // Same id, or same name, means the same stream: answer with it (200) when the spec agrees,
    // 409 when it does not. Ids derived from names make concurrent creates race to one key.
    let existing_by_name = match &name {
        Some(n) => st.registry.list().await?.into_iter().find(|s| &s.name == n),
        None => None,
    };
    let id = match (&req.id, &existing_by_name) {
        (Some(id), _) => id.clone(),
        (None, Some(s)) => s.id.clone(),
        (None, None) => match &name {
            Some(n) => id_for_name(n),
            None => uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
        },
    };
    let name = name.unwrap_or_else(|| id.clone());
    let spec = StreamSpec { id: id.clone(), name, url: url.url, created_ms: now_ms() };
    if st.registry.create(&spec).await? {
        tracing::info!(stream = %spec.id, url = %spec.url, "stream registered");
        return Ok((StatusCode::CREATED, Json(st.registry.view(spec).await?)));
    }
    let current = st.registry.get(&id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "conflict", format!("stream {id} is being deleted; retry"))
    })?;
    if current.url != spec.url || current.name != spec.name {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "stream {id} already exists with name `{}` and url {}; delete it first or use another id/name",
                current.name, current.url
            ),
        ));
    }
    Ok((StatusCode::OK, Json(st.registry.view(current).await?)))
}

async fn list_streams(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for spec in st.registry.list().await? {
        out.push(st.registry.view(spec).await?);
    }
    Ok(Json(serde_json::json!({ "streams": out })))
}

pub(crate) fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request("invalid_id", "stream ids are letters, digits, '-' and '_'"));
    }
    Ok(())
}

async fn get_stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    check_id(&id)?;
    let spec =
        st.registry.get(&id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    Ok(Json(st.registry.view(spec).await?))
}

async fn delete_stream(State(st): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if st.registry.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no stream with id {id}")));
    }
    st.registry.delete(&id).await?;
    tracing::info!(stream = %id, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    kind: Option<String>,
    limit: Option<u64>,
}

/// Events of a stream as stored in ClickHouse (deduplicated), in media-time order.
async fn stream_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let kind = match &q.kind {
        None => None,
        Some(k) => Some(sightline_wire::EventKind::parse(k).ok_or_else(|| {
            let kinds: Vec<_> = sightline_wire::EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::bad_request("invalid_kind", format!("unknown kind `{k}`; kinds are {}", kinds.join(", ")))
        })?),
    };
    let rows = st.store.events_of(&id, kind, limit).await?;
    let events: Vec<_> = rows.iter().filter_map(|r| r.to_event()).collect();
    Ok(Json(serde_json::json!({ "stream_id": id, "events": events })))
}

async fn readyz(State(st): State<AppState>) -> Response {
    let nats = st.bus.client.connection_state() == async_nats::connection::State::Connected;
    let clickhouse = st.store.version().await.map_err(|e| e.to_string());
    let redis = match st.search.vectors(&st.cfg.redis.url).await {
        Ok(v) => v.ping().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.message),
    };
    let ok = nats && clickhouse.is_ok() && redis.is_ok();
    let body = serde_json::json!({
        "nats": if nats { "ok".to_string() } else { "disconnected".to_string() },
        "clickhouse": match &clickhouse { Ok(v) => format!("ok ({v})"), Err(e) => e.clone() },
        "redis": match &redis { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
    });
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
