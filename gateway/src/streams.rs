//! The stream endpoints: register (checked by the URL policy and an ingest node's playlist check,
//! idempotent by id or name, capped), list, read (URLs shown redacted; whole only at `source` for
//! admin keys), pause, resume, delete, and the stored events of one stream.

use crate::error::ApiError;
use crate::routes::{AppState, now_ms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use sightline_bus::{StreamSpec, StreamState, StreamView};
use sightline_policy::{redact_secrets, redact_url};

/// A stream to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// rtmp://, rtmps://, rtsp://, http(s):// (HLS); `file` when allowed by config.
    url: String,
    /// Display name; the same name again returns the same stream.
    #[serde(default)]
    name: Option<String>,
    /// Client-chosen id (letters, digits, '-', '_'); makes creation idempotent (the name does too).
    #[serde(default)]
    id: Option<String>,
    /// Languages the stream speaks (ISO 639-1 codes, each one of the deployment's
    /// `speech.languages`); absent or empty: any of those. One language skips identification.
    #[serde(default)]
    languages: Vec<String>,
}

/// A request body that could not be read: too large (413) or broken.
pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "body_too_large" } else { "bad_body" };
    ApiError::new(status, code, format!("{} (limit {limit} bytes)", e.body_text()))
}

/// A stable id for a name, so two creates with the same name race to the same registry key.
fn id_for_name(name: &str) -> String {
    let h = sightline_wire::stable_hash([name.as_bytes()]);
    format!("n{h:016x}")
}

/// Asks an ingest node to fetch and check an HLS playlist against the configured limits. As when
/// the playlist cannot be fetched, a check that no ingest node answers does not refuse the stream:
/// it is registered and shows `reconnecting` with the reason once an ingest node tries it.
pub(crate) async fn check_playlist(st: &AppState, url: &str) -> Result<(), ApiError> {
    let request = sightline_wire::CheckSourceRequest { url: url.to_string() };
    let timeout = std::time::Duration::from_secs(8);
    match sightline_bus::rpc::call(&st.bus, sightline_wire::Service::CheckSource, &request, timeout).await {
        Ok(sightline_wire::CheckSourceReply::Accepted) => Ok(()),
        Ok(sightline_wire::CheckSourceReply::Refused(why)) => {
            Err(ApiError::bad_request("invalid_playlist", why))
        }
        Err(e) => {
            tracing::warn!(error = %e, "playlist not checked at registration");
            Ok(())
        }
    }
}

/// Registers a stream (idempotent by id or name).
#[utoipa::path(post, path = "/v1/streams", tag = "streams", request_body = CreateStream,
    responses((status = 201, description = "registered", body = Object), (status = 200, description = "already registered with the same spec", body = Object),
        (status = 400, description = "bad body or URL", body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 409, description = "id or name taken by another spec", body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, description = "not sent as application/json", body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn create_stream(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<StreamView>), ApiError> {
    require_json(&headers)?;
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
    let configured = &st.cfg.speech.languages;
    if req.languages.len() > 16 || req.languages.iter().any(|l| !configured.contains(l)) {
        return Err(ApiError::bad_request(
            "invalid_languages",
            format!(
                "languages must be some of this deployment's speech.languages {configured:?} (at most 16)"
            ),
        ));
    }
    let mut languages = req.languages.clone();
    languages.sort();
    languages.dedup();
    let url = sightline_policy::validate_url(&req.url, &st.cfg.ingest.allowed_schemes)
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    sightline_policy::check_host(&url, &st.cfg.ingest.allow_list())
        .await
        .map_err(|e| ApiError::bad_request("invalid_url", e.to_string()))?;
    check_playlist(&st, &url.url).await?;
    if let Some(id) = &req.id {
        check_id(id)?;
    }
    let name = req.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if let Some(n) = &name
        && (n.len() > 200 || n.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request("invalid_name", "name must be at most 200 printable characters"));
    }
    // Same id, or same name, means the same stream: answer with it (200) when the spec agrees,
    // 409 when it does not. Ids derived from names make concurrent creates race to one key.
    let registered = st.registry.list().await?;
    let existing_by_name = name.as_ref().and_then(|n| registered.iter().find(|s| &s.name == n).cloned());
    let id = match (&req.id, &existing_by_name) {
        (Some(id), _) => id.clone(),
        (None, Some(s)) => s.id.clone(),
        (None, None) => match &name {
            Some(n) => id_for_name(n),
            None => uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
        },
    };
    let name = name.unwrap_or_else(|| id.clone());
    // The cap holds for new streams; asking again for an existing one still answers with it.
    let max = st.cfg.ingest.max_streams;
    if registered.len() >= max && !registered.iter().any(|s| s.id == id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_streams",
            format!("{max} streams are registered, the most allowed (ingest.max_streams); delete one first"),
        ));
    }
    let spec = StreamSpec {
        id: id.clone(),
        name,
        url: url.url,
        created_ms: now_ms(),
        paused: false,
        incarnation: sightline_bus::new_incarnation(),
        languages,
    };
    if st.registry.create(&spec).await? {
        tracing::info!(stream = %spec.id, url = %redact_url(&spec.url), "stream registered");
        return Ok((StatusCode::CREATED, Json(shown(st.registry.view(spec).await?))));
    }
    let current = st.registry.get(&id).await?.ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "conflict", format!("stream {id} is being deleted; retry"))
    })?;
    if current.url != spec.url || current.name != spec.name || current.languages != spec.languages {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "stream {id} already exists with name `{}` and url {}; delete it first or use another id/name",
                current.name,
                redact_url(&current.url)
            ),
        ));
    }
    Ok((StatusCode::OK, Json(st.registry.view(current).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only streams in this state (starting, running, degraded, reconnecting, failed, stopped, paused).
    status: Option<String>,
    /// Only streams whose name contains this text (case-insensitive).
    name: Option<String>,
}

/// Registered streams with their state, oldest first.
#[utoipa::path(get, path = "/v1/streams", tag = "streams", params(ListQuery),
    responses((status = 200, description = "`{\"streams\": [...]}`", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_streams(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if let Some(s) = &q.status
        && !StreamState::ALL.iter().any(|state| state.as_str() == s)
    {
        let names: Vec<&str> = StreamState::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::bad_request(
            "invalid_status",
            format!("status must be one of {}", names.join(", ")),
        ));
    }
    let needle = q.name.as_deref().map(str::to_lowercase);
    let mut out = Vec::new();
    for spec in st.registry.list().await? {
        if needle.as_ref().is_some_and(|n| !spec.name.to_lowercase().contains(n.as_str())) {
            continue;
        }
        let view = st.registry.view(spec).await?;
        if q.status.as_deref().is_some_and(|s| s != view.status.as_str()) {
            continue;
        }
        out.push(shown(view));
    }
    Ok(Json(serde_json::json!({ "streams": out })))
}

/// Stops ingesting a stream but keeps it registered.
#[utoipa::path(post, path = "/v1/streams/{id}/pause", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 200, description = "the stream, now paused", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn pause_stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    set_paused(st, id, true).await
}

/// Resumes a paused stream.
#[utoipa::path(post, path = "/v1/streams/{id}/resume", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 200, description = "the stream, resuming", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn resume_stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    set_paused(st, id, false).await
}

pub(crate) async fn set_paused(st: AppState, id: String, paused: bool) -> Result<Json<StreamView>, ApiError> {
    check_id(&id)?;
    let spec = st
        .registry
        .set_paused(&id, paused)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    tracing::info!(stream = %id, paused, "stream {}", if paused { "paused" } else { "resumed" });
    Ok(Json(shown(st.registry.view(spec).await?)))
}

/// A JSON body must say so: a form or `text/plain` POST (what a page on another site can send
/// without asking) is refused with 415.
pub(crate) fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be JSON, sent with `Content-Type: application/json` (got `{ctype}`)"),
    ))
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

/// A stream as every API caller sees it: its URL with credentials and query values masked, and
/// its last error without them. The whole URL is for admin keys, at `/v1/streams/{id}/source`.
fn shown(mut view: StreamView) -> StreamView {
    let url = std::mem::take(&mut view.spec.url);
    if let Some(d) = view.detail.as_mut() {
        d.last_error = d.last_error.take().map(|e| redact_secrets(&e, &url));
    }
    view.spec.url = redact_url(&url);
    view
}

/// The stream's URL as registered, credentials included (admin keys only).
#[utoipa::path(get, path = "/v1/streams/{id}/source", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 200, description = "`{\"id\": …, \"url\": …}`, the URL whole", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, description = "not an admin key", body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stream_source(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    let spec =
        st.registry.get(&id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    Ok(Json(serde_json::json!({ "id": spec.id, "url": spec.url })))
}

/// One stream with its live status.
#[utoipa::path(get, path = "/v1/streams/{id}", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn get_stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    check_id(&id)?;
    let spec =
        st.registry.get(&id).await?.ok_or_else(|| ApiError::not_found(format!("no stream with id {id}")))?;
    Ok(Json(shown(st.registry.view(spec).await?)))
}

/// Stops and removes a stream.
#[utoipa::path(delete, path = "/v1/streams/{id}", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 204, description = "deleted"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn delete_stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if st.registry.get(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("no stream with id {id}")));
    }
    st.registry.delete(&id).await?;
    tracing::info!(stream = %id, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// One kind: scene, transcript, frame, duplicate.
    kind: Option<String>,
    /// At most this many (default 1000, at most 10000).
    limit: Option<u64>,
}

/// Events of a stream as stored in ClickHouse (deduplicated), in media-time order.
/// A stream's events as stored in ClickHouse, in media-time order.
#[utoipa::path(get, path = "/v1/streams/{id}/events", tag = "streams", params(("id" = String, Path, description = "stream id"), EventsQuery),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 503, description = "ClickHouse unreachable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stream_events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    check_id(&id)?;
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let kind = match &q.kind {
        None => None,
        Some(k) => Some(sightline_wire::EventKind::parse(k).ok_or_else(|| {
            let kinds: Vec<_> = sightline_wire::EventKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::bad_request(
                "invalid_kind",
                format!("unknown kind `{k}`; kinds are {}", kinds.join(", ")),
            )
        })?),
    };
    let rows = st.store.events_of(&id, kind, limit).await?;
    let events: Vec<_> = rows.iter().filter_map(|r| r.to_event()).collect();
    Ok(Json(serde_json::json!({ "stream_id": id, "events": events })))
}
