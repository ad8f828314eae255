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
        "url `{0}` could be read as naming different hosts (a backslash, several `@`, or `#` before the host); write it plainly"
    )]
    Ambiguous(String),
    #[error(
        "host `{host}` resolves to {addr}, a private or special-purpose address (private, loopback, link-local, CGNAT, NAT64, 6to4, documentation, benchmarking, reserved, multicast) and not in ingest.allow_hosts; refused"
    )]
    PrivateHost { host: String, addr: std::net::IpAddr },
    #[error("host `{0}` does not resolve")]
    Unresolvable(String),
    #[error(
        "ingest.allow_hosts entry `{0}` is not an address, CIDR or host name with an optional port (e.g. `127.0.0.1:8080`, `10.0.0.0/8`, `[::1]:1935`, `cameras.lan:554`)"
    )]
    BadAllowEntry(String),
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
        // Where parsers disagree (ours, GStreamer's, an HTTP library's), a URL could name one host
        // to this check and another to the source that fetches it: such URLs are refused.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if rest.contains('\\') || authority.matches('@').count() > 1 || rest.starts_with('#') {
            return Err(SourceError::Ambiguous(url.into()));
        }
        let host = authority.rsplit('@').next().unwrap_or("");
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

/// The URL with its host replaced by an address already checked, so that the media stack
/// connects where the policy looked and does not resolve the name again (DNS rebinding). Userinfo,
/// path and query are kept; the port is written out.
pub fn pin(url: &str, addr: std::net::SocketAddr) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let userinfo = rest[..end].rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    format!("{scheme}://{userinfo}{addr}{}", &rest[end..])
}

/// IPv4 ranges of the IANA special-purpose registry (RFC 6890 and updates) that a user's URL must
/// not reach: this network, private, shared (CGNAT), loopback, link-local, IETF protocol
/// assignments, documentation, 6to4 relay anycast, benchmarking, multicast, reserved, broadcast.
const SPECIAL_V4: [([u8; 4], u8); 16] = [
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 4),
    ([240, 0, 0, 0], 4),
    ([255, 255, 255, 255], 32),
];

/// IPv6 ranges of the IANA special-purpose registry: unspecified, loopback, IPv4-mapped and
/// -translated, NAT64 (well-known and local-use), discard-only, IETF protocol assignments (TEREDO,
/// ORCHIDv2 and benchmarking inside it), documentation, 6to4, segment routing, unique-local,
/// link-local, site-local and multicast.
const SPECIAL_V6: [([u16; 8], u8); 13] = [
    ([0, 0, 0, 0, 0, 0, 0, 0], 128),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128),
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    ([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 9),
];

/// Whether an address is one a user-supplied URL must not reach by default: any special-purpose
/// range (private, loopback, link-local, CGNAT, documentation, benchmarking, reserved, NAT64, 6to4,
/// …) or multicast. IPv6 addresses that embed an IPv4 one (mapped, translated, NAT64, 6to4) fall
/// in those ranges whatever the IPv4 address is.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            SPECIAL_V4
                .iter()
                .any(|&(net, len)| a >> (32 - len as u32) == u32::from_be_bytes(net) >> (32 - len as u32))
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            let in_range = |net: [u16; 8], len: u8| {
                let n = u128::from(std::net::Ipv6Addr::from(net));
                len == 0 || a >> (128 - len as u32) == n >> (128 - len as u32)
            };
            v6.is_multicast() || SPECIAL_V6.iter().any(|&(net, len)| in_range(net, len))
        }
    }
}

/// Resolves the URL's host and checks every address against the policy ([`crate::AllowList`]);
/// returns the addresses to connect to, so that what was checked is what is reached (a second
/// resolution could answer differently). A file URL has none.
pub async fn check_host(
    src: &SourceUrl,
    allow: &crate::AllowList,
) -> Result<Vec<std::net::SocketAddr>, SourceError> {
    if !src.live {
        return Ok(Vec::new());
    }
    let (host, port) = host_port(&src.url).ok_or_else(|| SourceError::NoHost(src.url.clone()))?;
    allow.resolve(&host, port).await
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
        // URLs that parsers read differently are refused outright.
        for tricky in [
            "http://a@b@127.0.0.1/x.m3u8",
            "http://public.example\\@127.0.0.1/x.m3u8",
            "rtsp://#@127.0.0.1/stream",
            "http://127.0.0.1\\.public.example/x",
        ] {
            assert!(matches!(validate_url(tricky, &allowed()), Err(SourceError::Ambiguous(_))), "{tricky}");
        }
    }

    #[test]
    fn pins_the_checked_address() {
        let v4: std::net::SocketAddr = "93.184.216.34:1935".parse().unwrap();
        assert_eq!(
            pin("rtmp://u:p@cdn.example/live/key?x=1", v4),
            "rtmp://u:p@93.184.216.34:1935/live/key?x=1"
        );
        let v6: std::net::SocketAddr = "[2606:4700::1]:8554".parse().unwrap();
        assert_eq!(pin("rtsp://cam.example:8554", v6), "rtsp://[2606:4700::1]:8554");
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
            "::ffff:8.8.8.8",
            "224.0.0.1",
            // Special-purpose ranges beyond the private ones.
            "198.18.0.1",
            "198.19.255.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "240.0.0.1",
            "255.255.255.255",
            "64:ff9b::a00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "2002:a00:1::1",
            "2001:db8::1",
            "2001::1",
            "100::1",
            "ff02::1",
            "::",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "198.20.0.1", "192.0.3.1", "2a00:1450::1"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn internal_hosts_refused_unless_allowed() {
        let a = allowed();
        let none = crate::AllowList::default();
        let u = validate_url("http://127.0.0.1:8080/x.m3u8", &a).unwrap();
        let err = check_host(&u, &none).await.unwrap_err();
        assert!(matches!(err, SourceError::PrivateHost { .. }), "{err}");
        assert!(err.to_string().contains("allow_hosts"));
        let u = validate_url("http://localhost:8080/x.m3u8", &a).unwrap();
        assert!(matches!(check_host(&u, &none).await, Err(SourceError::PrivateHost { .. })));
        let port_only = crate::AllowList::parse(&["127.0.0.1:8080".into(), "[::1]:8080".into()]).unwrap();
        let pinned = check_host(&u, &port_only).await.unwrap();
        assert!(!pinned.is_empty() && pinned.iter().all(|a| a.port() == 8080 && a.ip().is_loopback()));
        let other_port = validate_url("http://localhost:8081/x.m3u8", &a).unwrap();
        assert!(check_host(&other_port, &port_only).await.is_err());
        let u = validate_url("rtmp://[fe80::1]/live", &a).unwrap();
        assert!(check_host(&u, &none).await.is_err());
        let u = validate_url("http://8.8.8.8/x.m3u8", &a).unwrap();
        assert_eq!(check_host(&u, &none).await.unwrap(), vec!["8.8.8.8:80".parse().unwrap()]);
        // A decimal IPv4 literal resolves to the address it spells, and is checked as such.
        let u = validate_url("http://2130706433:8080/x.m3u8", &a).unwrap();
        assert!(check_host(&u, &none).await.is_err());
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
