//! Query embedding for search, served over request/reply ([`Service::Embed`]) so that the gateway
//! runs no model. Models load on the first request, on a blocking thread, and stay loaded.

use crate::loading::{load_embedder, load_image_text};
use sightline_bus::{Bus, rpc};
use sightline_models::{ImageTextModel, ModelError, TextEmbedder};
use sightline_runtime::Backoff;
use sightline_settings::Config;
use sightline_settings::Task;
use sightline_wire::{EmbedReply, EmbedRequest, QueryModel, Service};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Queries embedded at once by one node.
const CONCURRENCY: usize = 4;

#[derive(Default)]
struct Models {
    text: OnceCell<Arc<Mutex<TextEmbedder>>>,
    image_text: OnceCell<Arc<Mutex<ImageTextModel>>>,
}

/// Answers embedding requests until the task is dropped; a lost subscription is renewed with
/// backoff.
pub async fn serve_queries(bus: Bus, cfg: Config) {
    let models = Arc::new(Models::default());
    let cfg = Arc::new(cfg);
    let retry = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    for attempt in 1.. {
        let (models, cfg) = (models.clone(), cfg.clone());
        let served = rpc::serve(bus.clone(), Service::Embed, CONCURRENCY, move |q: EmbedRequest| {
            let (models, cfg) = (models.clone(), cfg.clone());
            async move { embed(&models, &cfg, q).await }
        })
        .await;
        let delay = retry.delay(attempt);
        match served {
            Ok(()) => {
                tracing::warn!(retry_in_ms = delay.as_millis() as u64, "query service ended; resubscribing")
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "query service failed")
            }
        }
        tokio::time::sleep(delay).await;
    }
}

async fn embed(models: &Models, cfg: &Arc<Config>, q: EmbedRequest) -> EmbedReply {
    let text = q.text;
    match q.model {
        QueryModel::Text => {
            let cfg = cfg.clone();
            let load = move || load_embedder(&cfg);
            run(&models.text, "text embedding", load, move |m| m.embed(&[text.as_str()])).await
        }
        QueryModel::ImageText => {
            let Ok(spec) = cfg.models.for_task(Task::ImageText).cloned() else {
                return EmbedReply::NoModel("no image-text model is configured (models.image_text)".into());
            };
            let cfg = cfg.clone();
            let load = move || load_image_text(&cfg, &spec);
            run(&models.image_text, "image-text", load, move |m| m.embed_texts(&[text.as_str()])).await
        }
    }
}

/// Loads the model into `cell` on first use, then embeds with it, both on blocking threads.
async fn run<M: Send + 'static>(
    cell: &OnceCell<Arc<Mutex<M>>>,
    what: &str,
    load: impl FnOnce() -> Result<M, ModelError> + Send + 'static,
    embed: impl FnOnce(&mut M) -> Result<Vec<Vec<f32>>, ModelError> + Send + 'static,
) -> EmbedReply {
    let loaded = cell
        .get_or_try_init(|| async move {
            let m = tokio::task::spawn_blocking(load).await.map_err(|e| e.to_string())?;
            m.map(|m| Arc::new(Mutex::new(m))).map_err(|e| e.to_string())
        })
        .await;
    let model = match loaded {
        Ok(m) => m.clone(),
        Err(e) => return EmbedReply::Failed(format!("the {what} model is not available: {e}")),
    };
    let ran =
        tokio::task::spawn_blocking(move || embed(&mut model.lock().unwrap_or_else(|e| e.into_inner())))
            .await;
    match ran {
        Ok(Ok(mut vectors)) => EmbedReply::Vector(vectors.pop().unwrap_or_default()),
        Ok(Err(e)) => EmbedReply::Failed(format!("embedding failed: {e}")),
        Err(e) => EmbedReply::Failed(format!("embedding failed: {e}")),
    }
}
