//! Request/reply between stages over plain NATS (not JetStream): the gateway asks an inference
//! node to embed a query and an ingest node to check a playlist, so it links neither stack.
//! A request that nobody answers in time is an error the caller turns into a clear 503.

use crate::connection::Bus;
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use sightline_wire::Service;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("no {service} service is running (start a node with the {role} role)")]
    NoResponders { service: &'static str, role: &'static str },
    #[error("the {service} service did not answer within {timeout:?}")]
    Timeout { service: &'static str, timeout: Duration },
    #[error("the {service} request failed")]
    Request {
        service: &'static str,
        #[source]
        source: async_nats::RequestError,
    },
    #[error("the {service} service answered something that is not a reply")]
    BadReply {
        service: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

fn role_of(service: Service) -> &'static str {
    match service {
        Service::Embed => "inference",
        Service::CheckSource => "ingest",
    }
}

/// Sends `request` to whichever node serves `service` and waits at most `timeout` for its reply.
pub async fn call<Q: Serialize, A: DeserializeOwned>(
    bus: &Bus,
    service: Service,
    request: &Q,
    timeout: Duration,
) -> Result<A, RpcError> {
    let name = service.as_str();
    let payload = serde_json::to_vec(request).expect("request serialises");
    let ask = bus.client.request(bus.names.rpc_subject(service), payload.into());
    let reply = match tokio::time::timeout(timeout, ask).await {
        Err(_) => return Err(RpcError::Timeout { service: name, timeout }),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(RpcError::NoResponders { service: name, role: role_of(service) });
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
            return Err(RpcError::Timeout { service: name, timeout });
        }
        Ok(Err(source)) => return Err(RpcError::Request { service: name, source }),
        Ok(Ok(m)) => m,
    };
    serde_json::from_slice(&reply.payload).map_err(|source| RpcError::BadReply { service: name, source })
}

/// Answers `service` requests with `answer` until the subscription ends. Requests are shared by
/// every node that serves the service (a queue group); at most `concurrency` are answered at once.
pub async fn serve<Q, A, F, Fut>(
    bus: Bus,
    service: Service,
    concurrency: usize,
    answer: F,
) -> Result<(), crate::BusError>
where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
    F: Fn(Q) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = A> + Send + 'static,
{
    let subject = bus.names.rpc_subject(service);
    let subscription = bus
        .client
        .queue_subscribe(subject.clone(), format!("{subject}.workers"))
        .await
        .map_err(crate::connection::js_err(format!("subscribe {subject}")))?;
    let answer = std::sync::Arc::new(answer);
    subscription
        .for_each_concurrent(concurrency.max(1), |msg| {
            let (bus, answer) = (bus.clone(), answer.clone());
            async move {
                let Some(reply_to) = msg.reply else { return };
                let reply = match serde_json::from_slice::<Q>(&msg.payload) {
                    Ok(q) => serde_json::to_vec(&answer(q).await).expect("reply serialises"),
                    Err(e) => {
                        tracing::warn!(service = service.as_str(), error = %e, "undecodable request ignored");
                        return;
                    }
                };
                if let Err(e) = bus.client.publish(reply_to, reply.into()).await {
                    tracing::warn!(service = service.as_str(), error = %e, "cannot send the reply");
                }
            }
        })
        .await;
    Ok(())
}
