//! Feeds refuse pages from other sites and too many clients, and close clients that stall: a
//! foreign `Origin` is a 403 on both feeds, one feed more than `gateway.max_feeds_per_key` is a 429
//! (and a closed one frees its slot), and a client that stops answering pings is closed with the
//! reason, so it holds no slot or buffer after that.

mod common;

use common::{TestSystem, test_config};
use futures::StreamExt;
use sightline_actors::Roles;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const GATEWAY_ONLY: Roles = Roles { gateway: true, ingest: false, inference: false, sink: false };

async fn open(
    url: &str,
    origin: Option<&str>,
) -> Result<impl StreamExt<Item = Result<Message, WsError>>, u16> {
    let mut req = url.into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_pages_and_extra_clients_are_refused() {
    let mut cfg = test_config();
    cfg.gateway.max_feeds_per_key = 2;
    cfg.gateway.allowed_origins = vec!["https://ops.example".into()];
    let sys = TestSystem::start(cfg, GATEWAY_ONLY).await;
    let url = format!("ws://{}/v1/feed", sys.addr);
    assert_eq!(open(&url, Some("http://evil.example")).await.err(), Some(403));
    let sse = reqwest::Client::new()
        .get(format!("http://{}/v1/feed/sse", sys.addr))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 403);

    let own = format!("http://{}", sys.addr);
    let first = open(&url, Some(&own)).await.expect("the gateway's own origin");
    let second = open(&url, Some("https://ops.example")).await.expect("an allowed origin");
    assert_eq!(open(&url, None).await.err(), Some(429), "a third feed for the same caller");
    drop(first);
    // The slot frees once the server has seen the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let third = loop {
        match open(&url, None).await {
            Ok(ws) => break ws,
            Err(429) => {
                assert!(tokio::time::Instant::now() < deadline, "the closed feed's slot was never freed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    drop((second, third));
    let (status, _) = sys.http("GET", "/healthz", None).await;
    assert_eq!(status, 200);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed() {
    let mut cfg = test_config();
    cfg.gateway.feed_heartbeat_s = 1;
    cfg.gateway.feed_send_timeout_s = 1;
    cfg.gateway.max_feeds_per_key = 1;
    let sys = TestSystem::start(cfg, GATEWAY_ONLY).await;
    let url = format!("ws://{}/v1/feed", sys.addr);
    let mut silent = open(&url, None).await.expect("feed opens");
    // Not reading means not answering the server's pings. The client keeps its socket; the server
    // must close the feed (and free the caller's only slot) within a heartbeat plus the send timeout.
    let started = tokio::time::Instant::now();
    let next = loop {
        match open(&url, None).await {
            Ok(ws) => break ws,
            Err(429) => {
                assert!(started.elapsed() < Duration::from_secs(15), "the silent client was never closed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    // What the silent client finds when it reads at last: pings, then the close with the reason,
    // unless the server's reset overtook it.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), silent.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1008);
                assert!(frame.reason.contains("silent"), "{}", frame.reason);
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the silent client's feed is still open"),
        }
    }
    drop(next);
    sys.shutdown().await;
}
