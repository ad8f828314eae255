//! Finding moments: semantic search over embedded text (`/v1/search`), kept frames and their
//! nearest neighbours across streams (`/v1/frames/{id}`, `/v1/frames/{id}/similar`).

use crate::error::ApiError;
use crate::routes::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use sightline_bus::rpc;
use sightline_settings::Task;
use sightline_store::{Query as VQuery, VectorStore, filter_string};
use sightline_wire::{EmbedReply, EmbedRequest, EventKind, QueryModel, Service, VectorSpace};
use tokio::sync::OnceCell;

/// Longest search query accepted, characters.
const MAX_QUERY_CHARS: usize = 1000;

/// The vector store connection, opened on first use (so the gateway starts, and reports it in
/// `/readyz`, even while Redis is down).
#[derive(Default)]
pub struct SearchState {
    vectors: OnceCell<VectorStore>,
}

impl SearchState {
    pub async fn vectors(&self, url: &str) -> Result<&VectorStore, ApiError> {
        self.vectors
            .get_or_try_init(|| VectorStore::connect(url))
            .await
            .map_err(|e| ApiError::unavailable(format!("the vector store is not reachable: {e}")))
    }
}

/// How long a query waits for an inference node to embed it.
const EMBED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The query's vector, embedded by an inference node over request/reply: 503 when none answers.
async fn embed_query(st: &AppState, model: QueryModel, text: String) -> Result<Vec<f32>, ApiError> {
    let request = EmbedRequest { model, text };
    let reply = rpc::call(&st.bus, Service::Embed, &request, EMBED_TIMEOUT)
        .await
        .map_err(|e| ApiError::unavailable(format!("the query could not be embedded: {e}")))?;
    match reply {
        EmbedReply::Vector(v) => Ok(v),
        EmbedReply::NoModel(why) => Err(ApiError::bad_request("no_image_text_model", why)),
        EmbedReply::Failed(why) => Err(ApiError::unavailable(why)),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words to search for (what was said).
    q: Option<String>,
    /// Hits to return (default 10).
    k: Option<usize>,
    /// Only this stream.
    stream: Option<String>,
    /// Wall-clock bounds: Unix milliseconds or RFC 3339.
    from: Option<String>,
    to: Option<String>,
    /// Comma-separated text kinds (default: all of them; `space=text` only).
    kinds: Option<String>,
    /// `text` (default: what was said, shown as text, or labelled) or `image_text` (kept frames
    /// by what they show, with the configured CLIP-like model).
    space: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SearchHit {
    pub id: String,
    pub stream_id: String,
    pub kind: String,
    pub pts_ms: i64,
    pub wall_ms: i64,
    pub text: String,
    /// Similarity, (1 + cosine) / 2.
    pub score: f32,
    /// The stream's last kept frame at or before the moment, when there is one.
    pub frame_id: Option<String>,
    pub frame_url: Option<String>,
    /// The stream's stored events around the moment.
    pub events_url: String,
}

fn parse_time(name: &str, raw: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = raw.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_time",
                format!("`{name}` must be Unix milliseconds or RFC 3339 (2026-11-28T12:00:00Z), got `{raw}`"),
            )
        })
}

fn check_k(k: Option<usize>, max: usize) -> Result<usize, ApiError> {
    let k = k.unwrap_or(10);
    if k == 0 || k > max {
        return Err(ApiError::bad_request("invalid_k", format!("k must be 1..={max}, got {k}")));
    }
    Ok(k)
}

/// The vector-set filter for a search's stream, time bounds and kinds.
fn search_filter(q: &SearchQuery) -> Result<Option<String>, ApiError> {
    let mut clauses = Vec::new();
    if let Some(s) = q.stream.as_deref().filter(|s| !s.is_empty()) {
        crate::streams::check_id(s)?;
        clauses.push(format!(".stream == {}", filter_string(s)));
    }
    if let Some(f) = &q.from {
        clauses.push(format!(".wall_ms >= {}", parse_time("from", f)?));
    }
    if let Some(t) = &q.to {
        clauses.push(format!(".wall_ms <= {}", parse_time("to", t)?));
    }
    if let Some(kinds) = q.kinds.as_deref().filter(|k| !k.is_empty()) {
        let mut alts = Vec::new();
        for k in kinds.split(',').map(str::trim) {
            match EventKind::parse(k) {
                Some(kind) if kind.is_text() => alts.push(format!(".kind == {}", filter_string(k))),
                _ => {
                    let text_kinds: Vec<_> =
                        EventKind::ALL.iter().filter(|k| k.is_text()).map(|k| k.as_str()).collect();
                    return Err(ApiError::bad_request(
                        "invalid_kind",
                        format!(
                            "`{k}` is not a searchable kind; searchable kinds: {}",
                            text_kinds.join(", ")
                        ),
                    ));
                }
            }
        }
        clauses.push(format!("({})", alts.join(" or ")));
    }
    Ok((!clauses.is_empty()).then(|| clauses.join(" and ")))
}

/// `GET /v1/search`: embeds the query and asks the text set for the nearest transcript lines,
/// on-screen text lines (OCR) and frame labels, filtered by stream, time and kind; or, with
/// `space=image_text`, the image-text set for the kept frames that best match the description.
#[utoipa::path(get, path = "/v1/search", tag = "search", params(SearchQuery),
    responses((status = 200, description = "hits, best first", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 503, description = "Redis or the model unavailable", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn search(
    State(st): State<AppState>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let text = q.q.as_deref().map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Err(ApiError::bad_request("missing_query", "give the words to search for as `q`"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!("`q` is limited to {MAX_QUERY_CHARS} characters"),
        ));
    }
    let k = check_k(q.k, st.cfg.gateway.search_max_k)?;
    let filter = search_filter(&q)?;
    let query = text.to_string();
    let space = q.space.as_deref().unwrap_or("text");
    let (space, vector) = match space {
        "text" => (VectorSpace::Text, embed_query(&st, QueryModel::Text, query).await?),
        "image_text" => {
            if q.kinds.is_some() {
                return Err(ApiError::bad_request(
                    "invalid_kind",
                    "`kinds` applies to space=text; image_text finds frames",
                ));
            }
            if st.cfg.models.for_task(Task::ImageText).is_err() {
                return Err(ApiError::bad_request(
                    "no_image_text_model",
                    "space=image_text needs an image-text (CLIP-like) model: set models.image_text",
                ));
            }
            (VectorSpace::ImageText, embed_query(&st, QueryModel::ImageText, query).await?)
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_space",
                format!("space must be `text` or `image_text`, got `{other}`"),
            ));
        }
    };
    let vectors = st.search.vectors(&st.cfg.redis.url).await?;
    let set = st.bus.names.vector_set(space);
    let hits = vectors.similar(&set, VQuery::Vector(&vector), k, filter.as_deref()).await?;
    let mut out = Vec::with_capacity(hits.len());
    for h in hits {
        let Some(a) = h.attrs else { continue };
        // A missing frame link is not worth failing the search over.
        let frame_id = if space == VectorSpace::ImageText {
            Some(h.id.clone())
        } else {
            st.store.frame_at(&a.stream, a.pts_ms).await.ok().flatten()
        };
        out.push(SearchHit {
            frame_url: frame_id.as_ref().map(|f| format!("/v1/frames/{f}")),
            frame_id,
            events_url: format!("/v1/streams/{}/events", a.stream),
            id: h.id,
            stream_id: a.stream,
            kind: a.kind,
            pts_ms: a.pts_ms,
            wall_ms: a.wall_ms,
            text: a.text,
            score: h.score,
        });
    }
    Ok(Json(
        serde_json::json!({ "query": text, "k": k, "space": space.as_str(), "filter": filter, "hits": out }),
    ))
}

fn check_frame_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ApiError::bad_request(
            "invalid_id",
            "frame ids are event ids like `<stream>.frame.<pts_ms>`",
        ));
    }
    Ok(())
}

/// `GET /v1/frames/{id}`: a kept frame (without its vector).
#[utoipa::path(get, path = "/v1/frames/{id}", tag = "search", params(("id" = String, Path, description = "frame event id")),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn frame(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_frame_id(&id)?;
    let rows = st.store.frames_by_id(std::slice::from_ref(&id)).await?;
    let f = rows.into_iter().next().ok_or_else(|| ApiError::not_found(format!("no frame with id {id}")))?;
    Ok(Json(serde_json::json!({
        "id": f.id,
        "stream_id": f.stream_id,
        "pts_ms": f.pts_ms,
        "wall_ms": (f.wall_time.unix_timestamp_nanos() / 1_000_000) as i64,
        "keyframe": f.keyframe == 1,
        "phash": format!("{:016x}", f.phash),
        "labels": f.labels.iter().zip(&f.label_scores).map(|(n, s)| serde_json::json!({"name": n, "score": s})).collect::<Vec<_>>(),
        "model": f.model,
        "similar_url": format!("/v1/frames/{id}/similar"),
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    /// Frames to return (default 10).
    k: Option<usize>,
    /// `signature` (default: how the frame looks; near-identical pictures) or `features` (what it
    /// shows, by the labelling model's image features).
    space: Option<String>,
}

/// `GET /v1/frames/{id}/similar`: the nearest kept frames across all streams.
#[utoipa::path(get, path = "/v1/frames/{id}/similar", tag = "search", params(("id" = String, Path, description = "frame event id"), SimilarQuery),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn similar_frames(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<SimilarQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    check_frame_id(&id)?;
    let k = check_k(q.k, st.cfg.gateway.search_max_k)?;
    let space = q.space.as_deref().unwrap_or("signature");
    let set = match space {
        "signature" => st.bus.names.vector_set(VectorSpace::Frames),
        "features" => st.bus.names.vector_set(VectorSpace::Features),
        other => {
            return Err(ApiError::bad_request(
                "invalid_space",
                format!("space must be `signature` or `features`, got `{other}`"),
            ));
        }
    };
    let vectors = st.search.vectors(&st.cfg.redis.url).await?;
    if vectors.attrs(&set, std::slice::from_ref(&id)).await?.first().cloned().flatten().is_none() {
        return Err(ApiError::not_found(format!("no frame with id {id} in the {space} vector set")));
    }
    // One more than asked: the frame itself comes back first.
    let hits = vectors.similar(&set, VQuery::Element(&id), k + 1, None).await?;
    let out: Vec<_> = hits
        .into_iter()
        .filter(|h| h.id != id)
        .take(k)
        .filter_map(|h| {
            let a = h.attrs?;
            Some(serde_json::json!({
                "id": h.id, "stream_id": a.stream, "pts_ms": a.pts_ms, "wall_ms": a.wall_ms,
                "keyframe": a.keyframe, "score": h.score, "frame_url": format!("/v1/frames/{}", h.id),
            }))
        })
        .collect();
    Ok(Json(serde_json::json!({ "id": id, "k": k, "space": space, "similar": out })))
}

fn bmp(bytes: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "image/bmp"), (axum::http::header::CACHE_CONTROL, "max-age=60")],
        bytes,
    )
        .into_response()
}

/// `GET /v1/frames/{id}/image`: the frame's thumbnail (BMP).
#[utoipa::path(get, path = "/v1/frames/{id}/image", tag = "search", params(("id" = String, Path, description = "frame event id")),
    responses((status = 200, description = "96x54 BMP", content_type = "image/bmp"), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn frame_image(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    check_frame_id(&id)?;
    let vectors = st.search.vectors(&st.cfg.redis.url).await?;
    let img = vectors.get_blob(&st.bus.names.thumbnail_key(&id)).await?;
    img.map(bmp).ok_or_else(|| ApiError::not_found(format!("no picture of frame {id}")))
}

/// `GET /v1/streams/{id}/thumbnail`: the stream's latest kept frame (BMP).
#[utoipa::path(get, path = "/v1/streams/{id}/thumbnail", tag = "streams", params(("id" = String, Path, description = "stream id")),
    responses((status = 200, description = "96x54 BMP", content_type = "image/bmp"), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn stream_thumbnail(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    crate::streams::check_id(&id)?;
    let vectors = st.search.vectors(&st.cfg.redis.url).await?;
    let Some(frame) = vectors.get_blob(&st.bus.names.latest_frame_key(&id)).await? else {
        return Err(ApiError::not_found(format!("no frame kept yet for stream {id}")));
    };
    let frame = String::from_utf8_lossy(&frame).into_owned();
    let img = vectors.get_blob(&st.bus.names.thumbnail_key(&frame)).await?;
    img.map(bmp).ok_or_else(|| ApiError::not_found(format!("no picture for stream {id}")))
}
