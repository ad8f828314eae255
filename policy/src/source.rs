//! Validation of user-supplied stream URLs and the outbound address policy, before anything is
//! started for them.

use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SourceError {
    #[error("url is empty")]
    Empty,
    #[error("url is too long ({0} bytes, at most 2048)")]
    TooLong(usize),
    #[error("url `{0}` has no scheme; expected e.g. rtmp://host/app/key or https://host/live.m3u8")]
    NoScheme(String),
    #[error("scheme `{scheme}` is not supported; allowed: {allowed}")]
    Scheme { scheme: String, allowed: String },
    #[error("url `{0}` has no host")]
    NoHost(String),
    #[error("url contains whitespace or control characters")]
    BadChars,
    #[error(
        "host `{host}` resolves to {addr}, a private, loopback or link-local address; refused (set ingest.allow_private_hosts to allow)"
    )]
    PrivateHost { host: String, addr: std::net::IpAddr },
    #[error("host `{0}` does not resolve")]
    Unresolvable(String),
}

/// A stream URL that passed validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceUrl {
    pub url: String,
    pub scheme: String,
    /// Whether the source is expected to be live (EOS means reconnect) or a finite file.
    pub live: bool,
}

pub fn validate_url(raw: &str, allowed_schemes: &[String]) -> Result<SourceUrl, SourceError> {
    let url = raw.trim();
    if url.is_empty() {
        return Err(SourceError::Empty);
    }
    if url.len() > 2048 {
        return Err(SourceError::TooLong(url.len()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SourceError::BadChars);
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| SourceError::NoScheme(url.into()))?;
    let scheme = scheme.to_ascii_lowercase();
    if !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+') || scheme.is_empty() {
        return Err(SourceError::NoScheme(url.into()));
    }
    if !allowed_schemes.iter().any(|s| s.eq_ignore_ascii_case(&scheme)) {
        return Err(SourceError::Scheme { scheme, allowed: allowed_schemes.join(", ") });
    }
    let live = scheme != "file";
    if live {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or("");
        if host.is_empty() || host.starts_with(':') {
            return Err(SourceError::NoHost(url.into()));
        }
    } else if rest.is_empty() {
        return Err(SourceError::NoHost(url.into()));
    }
    Ok(SourceUrl { url: url.to_string(), scheme, live })
}

/// The host and port a URL points at (default port by scheme).
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        "rtmp" => 1935,
        "rtmps" => 443,
        "rtsp" => 554,
        _ => 0,
    };
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = rest.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default);
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// Whether an address is one a user-supplied URL must not reach by default: private, loopback,
/// link-local, shared (CGNAT), unspecified, broadcast, multicast, or unique-local IPv6.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves the URL's host and refuses internal addresses unless `allow_internal`. Every address
/// the name resolves to must be public (a name with one public and one private address is refused).
pub async fn check_host(src: &SourceUrl, allow_internal: bool) -> Result<(), SourceError> {
    if allow_internal || !src.live {
        return Ok(());
    }
    let (host, port) = host_port(&src.url).ok_or_else(|| SourceError::NoHost(src.url.clone()))?;
    let addrs: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| SourceError::Unresolvable(host.clone()))?
        .map_err(|_| SourceError::Unresolvable(host.clone()))?
        .map(|a| a.ip())
        .collect(),
    };
    if addrs.is_empty() {
        return Err(SourceError::Unresolvable(host));
    }
    if let Some(addr) = addrs.into_iter().find(|a| is_internal(*a)) {
        return Err(SourceError::PrivateHost { host, addr });
    }
    Ok(())
}

/// Tries a TCP connection to the URL's host and port (1 s); returns why it failed, if it did.
pub async fn probe_tcp(url: &str) -> Option<String> {
    let (host, port) = host_port(url)?;
    if port == 0 {
        return None;
    }
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    match tokio::time::timeout(std::time::Duration::from_secs(1), tokio::net::TcpStream::connect(&target))
        .await
    {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(format!("cannot connect to {target}: {e}")),
        Err(_) => Some(format!("cannot connect to {target}: no answer within 1 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        ["rtmp", "http", "https", "rtsp"].map(String::from).to_vec()
    }

    #[test]
    fn accepts_supported_urls() {
        let u = validate_url(" rtmp://127.0.0.1:1935/live/a ", &allowed()).unwrap();
        assert_eq!(u.scheme, "rtmp");
        assert!(u.live);
        assert_eq!(validate_url("HTTPS://h/x.m3u8", &allowed()).unwrap().scheme, "https");
    }

    #[test]
    fn rejects_bad_urls_with_reasons() {
        assert_eq!(validate_url("", &allowed()), Err(SourceError::Empty));
        assert!(matches!(validate_url("ftp://h/x", &allowed()), Err(SourceError::Scheme { .. })));
        assert!(matches!(validate_url("file:///etc/passwd", &allowed()), Err(SourceError::Scheme { .. })));
        assert!(matches!(validate_url("just-a-name", &allowed()), Err(SourceError::NoScheme(_))));
        assert!(matches!(validate_url("http:///x", &allowed()), Err(SourceError::NoHost(_))));
        assert_eq!(validate_url("http://h/a b", &allowed()), Err(SourceError::BadChars));
        let long = format!("http://h/{}", "a".repeat(3000));
        assert!(matches!(validate_url(&long, &allowed()), Err(SourceError::TooLong(_))));
        let err = validate_url("ftp://h/x", &allowed()).unwrap_err().to_string();
        assert!(err.contains("ftp") && err.contains("rtmp"), "{err}");
    }

    #[test]
    fn host_and_port_by_scheme() {
        assert_eq!(host_port("rtmp://a.b/live/x"), Some(("a.b".into(), 1935)));
        assert_eq!(host_port("http://u:p@h:8080/x.m3u8"), Some(("h".into(), 8080)));
        assert_eq!(host_port("rtsp://[::1]:8554/s"), Some(("::1".into(), 8554)));
        assert_eq!(host_port("https://h"), Some(("h".into(), 443)));
    }

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn internal_hosts_refused_unless_allowed() {
        let a = allowed();
        let u = validate_url("http://127.0.0.1:8080/x.m3u8", &a).unwrap();
        let err = check_host(&u, false).await.unwrap_err();
        assert!(matches!(err, SourceError::PrivateHost { .. }), "{err}");
        assert!(err.to_string().contains("allow_private_hosts"));
        let u = validate_url("http://localhost:8080/x.m3u8", &a).unwrap();
        assert!(matches!(check_host(&u, false).await, Err(SourceError::PrivateHost { .. })));
        assert!(check_host(&u, true).await.is_ok());
        let u = validate_url("rtmp://[fe80::1]/live", &a).unwrap();
        assert!(check_host(&u, false).await.is_err());
        let u = validate_url("http://8.8.8.8/x.m3u8", &a).unwrap();
        assert!(check_host(&u, false).await.is_ok());
    }

    #[tokio::test]
    async fn probe_reports_refused_connections() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap().port();
        assert_eq!(probe_tcp(&format!("http://127.0.0.1:{open}/x.m3u8")).await, None);
        drop(l);
        let why = probe_tcp(&format!("http://127.0.0.1:{open}/x.m3u8")).await.unwrap();
        assert!(
            why.contains("cannot connect to 127.0.0.1") && why.to_lowercase().contains("refused"),
            "{why}"
        );
    }

    #[test]
    fn files_only_when_allowed() {
        let mut a = allowed();
        a.push("file".into());
        let u = validate_url("file:///tmp/x.mp4", &a).unwrap();
        assert!(!u.live);
    }
}
