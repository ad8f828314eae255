//! The cluster as the API shows it: the live nodes, what each runs, and draining one.

use crate::error::ApiError;
use crate::routes::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sightline_bus::Cluster;
use sightline_wire::{NodeCommand, NodeInfo, now_ms};
use std::time::Duration;

async fn cluster(st: &AppState) -> Result<Cluster, ApiError> {
    Cluster::open(&st.bus)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the membership: {e}")))
}

/// A node id as the membership spells it.
fn check_node_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > 64
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(
            "invalid_node_id",
            "a node id is 1–64 letters, digits, `-` or `_`",
        ));
    }
    Ok(())
}

/// Live nodes (heartbeat within three intervals), with their roles, capacity, load and the
/// streams each ingests.
#[utoipa::path(get, path = "/v1/nodes", tag = "cluster",
    responses((status = 200, description = "live nodes", body = Object), (status = 401, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn list_nodes(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = now_ms();
    let nodes: Vec<NodeInfo> = cluster(&st)
        .await?
        .node_list()
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read the membership: {e}")))?
        .into_iter()
        .filter(|n| n.alive(now))
        .collect();
    let streams: usize = nodes.iter().map(|n| n.streams.len()).sum();
    Ok(Json(serde_json::json!({ "nodes": nodes, "streams_ingested": streams })))
}

/// Asks a node to hand every stream over to the other ingest nodes and take no new ones; the
/// node stays up (stop it once `/v1/nodes` shows it without streams). 202 with the streams it
/// is handing over.
#[utoipa::path(post, path = "/v1/nodes/{id}/drain", tag = "cluster", params(("id" = String, Path, description = "node id")),
    responses((status = 202, description = "draining", body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn drain_node(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_node_id(&id)?;
    let alive = cluster(&st).await?.node_list().await.ok().unwrap_or_default();
    if !alive.iter().any(|n| n.id == id && n.alive(now_ms())) {
        return Err(ApiError::not_found(format!("no live node `{id}` (see GET /v1/nodes)")));
    }
    let body = serde_json::to_vec(&NodeCommand::Drain).expect("serialises");
    let asked = tokio::time::timeout(
        Duration::from_secs(5),
        st.bus.client.request(st.bus.names.node_subject(&id), body.into()),
    )
    .await;
    match asked {
        Ok(Ok(reply)) => {
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
            Ok((StatusCode::ACCEPTED, Json(v)))
        }
        _ => Err(ApiError::unavailable(format!("node `{id}` did not answer the drain request within 5 s"))),
    }
}
