//! One GET under the address policy: the host is resolved once and every address checked
//! ([`AllowList::resolve`]), the connection goes to a checked address (pinned), TLS verifies the
//! name against the system's roots, and a redirect is followed only after its target passed the
//! same checks, at most `max_redirects` times. Nothing here reads a proxy from the environment.

use crate::url::{HttpUrl, join};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sightline_policy::{AllowList, SourceError, redact_url};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting (TCP and TLS) may take, per address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the answer's headers may take once connected.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL, or an address it resolves to, is refused by the policy.
    #[error(transparent)]
    Policy(#[from] SourceError),
    #[error("more than {0} redirects")]
    TooManyRedirects(u32),
    #[error("a redirect without a Location header")]
    NoLocation,
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the source answered {status} for {url}")]
    Status { status: u16, url: String },
}

impl FetchError {
    /// Whether the source broke the policy or a limit (retrying would do the same), as opposed
    /// to being unreachable or failing for now.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Policy(_) | Self::TooManyRedirects(_) | Self::TooLarge(_))
    }
}

/// An answer whose headers arrived; the body is read by the caller.
pub struct Fetched {
    /// The URL that answered, after redirects (what relative URIs in the body resolve against).
    pub url: String,
    pub status: u16,
    pub content_type: String,
    pub body: Incoming,
}

impl Fetched {
    /// Reads the whole body, refusing more than `max` bytes.
    pub async fn read_capped(mut self, max: u64, idle: Duration) -> Result<Bytes, FetchError> {
        let mut out = bytes::BytesMut::new();
        while let Some(frame) =
            tokio::time::timeout(idle, self.body.frame()).await.map_err(|_| FetchError::Timeout(idle))?
        {
            let frame = frame.map_err(|e| FetchError::Http(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if (out.len() + data.len()) as u64 > max {
                    return Err(FetchError::TooLarge(max));
                }
                out.extend_from_slice(data);
            }
        }
        Ok(out.freeze())
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Fetches http(s) URLs under the policy. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    allow: Arc<AllowList>,
    tls: tokio_rustls::TlsConnector,
    max_redirects: u32,
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no TLS root certificates found on this machine: https sources will fail");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// `user:password` (percent-encoded, as in a URL) as a Basic credential.
fn basic_auth(userinfo: &str) -> String {
    let decoded = sightline_policy::percent_decode(userinfo);
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(decoded.len().div_ceil(3) * 4);
    for chunk in decoded.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

impl Fetcher {
    pub fn new(allow: AllowList, max_redirects: u32) -> Self {
        Self { allow: Arc::new(allow), tls: tokio_rustls::TlsConnector::from(tls_config()), max_redirects }
    }

    /// GETs `url`, following checked redirects. A non-2xx answer is [`FetchError::Status`].
    pub async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut current = url.to_string();
        for _ in 0..=self.max_redirects {
            let parsed = HttpUrl::parse(&current)?;
            let res = self.once(&parsed).await?;
            let status = res.status().as_u16();
            if res.status().is_redirection() && status != 304 {
                let location = res
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::NoLocation)?;
                let next = join(&current, location);
                tracing::debug!(from = %redact_url(&current), to = %redact_url(&next), "following a redirect after checking it");
                current = next;
                continue;
            }
            if !res.status().is_success() {
                return Err(FetchError::Status { status, url: redact_url(&current) });
            }
            let content_type = res
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            return Ok(Fetched { url: current, status, content_type, body: res.into_body() });
        }
        Err(FetchError::TooManyRedirects(self.max_redirects))
    }

    async fn connect(&self, url: &HttpUrl) -> Result<Box<dyn Io>, FetchError> {
        let addrs = self.allow.resolve(&url.host, url.port).await?;
        let mut last = None;
        for addr in addrs {
            let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = Some(FetchError::Connect { addr, reason: e.to_string() });
                    continue;
                }
                Err(_) => {
                    last = Some(FetchError::Connect { addr, reason: "no answer within 5 s".into() });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if !url.https {
                return Ok(Box::new(tcp));
            }
            let tls_err = |reason: String| FetchError::Tls { host: url.host.clone(), reason };
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| tls_err(e.to_string()))?;
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.connect(name, tcp))
                .await
                .map_err(|_| tls_err("no handshake within 5 s".into()))?
                .map_err(|e| tls_err(e.to_string()))?;
            return Ok(Box::new(tls));
        }
        Err(last.unwrap_or_else(|| FetchError::Http("no address to connect to".into())))
    }

    async fn once(&self, url: &HttpUrl) -> Result<hyper::Response<Incoming>, FetchError> {
        let io = self.connect(url).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "source connection ended");
            }
        });
        let mut req = hyper::Request::get(&url.target)
            .header(hyper::header::HOST, url.host_header())
            .header(hyper::header::USER_AGENT, concat!("sightline/", env!("CARGO_PKG_VERSION")))
            .header(hyper::header::ACCEPT_ENCODING, "identity");
        if let Some(u) = &url.userinfo {
            req = req.header(hyper::header::AUTHORIZATION, basic_auth(u));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| FetchError::Http(e.to_string()))?;
        tokio::time::timeout(HEADERS_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| FetchError::Timeout(HEADERS_TIMEOUT))?
            .map_err(|e| FetchError::Http(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_then_encoded() {
        assert_eq!(basic_auth("Aladdin:open%20sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert_eq!(basic_auth("a:b"), "Basic YTpi");
        assert_eq!(basic_auth("ab:cd"), "Basic YWI6Y2Q=");
    }
}
