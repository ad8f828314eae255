//! The HTTP URLs the egress fetches: parsed once, by the same code that checked them, and joined
//! the way a playlist's relative URIs are resolved (RFC 3986, section 5.2).

use sightline_policy::{SourceError, host_port, validate_url};

/// An http(s) URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`; the fragment is dropped (never sent).
    pub target: String,
    /// `user:password`, percent-encoded as written.
    pub userinfo: Option<String>,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<Self, SourceError> {
        let http = ["http".to_string(), "https".to_string()];
        let checked = validate_url(url, &http)?;
        let url = checked.url.as_str();
        let (host, port) = host_port(url).ok_or_else(|| SourceError::NoHost(url.to_string()))?;
        let rest = &url[checked.scheme.len() + 3..];
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u.to_string());
        let target = rest[end..].split('#').next().unwrap_or("");
        let target = if target.starts_with('/') { target.to_string() } else { format!("/{target}") };
        Ok(Self { https: checked.scheme == "https", host, port, target, userinfo })
    }

    /// The `Host` header's value.
    pub fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == default { host } else { format!("{host}:{}", self.port) }
    }
}

fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}

/// Removes `.` and `..` segments from a path (RFC 3986 5.2.4).
fn remove_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// Resolves `reference` (as written in a playlist or a `Location` header) against `base`.
pub fn join(base: &str, reference: &str) -> String {
    let reference = reference.trim();
    if scheme_of(reference).is_some() {
        return reference.to_string();
    }
    let base = base.split('#').next().unwrap_or(base);
    let scheme = scheme_of(base).unwrap_or("http");
    if let Some(rest) = reference.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let after = base.get(scheme.len() + 3..).unwrap_or("");
    let authority_end = after.find(['/', '?']).unwrap_or(after.len());
    let origin = &base[..base.len() - after.len() + authority_end];
    let base_path_query = &after[authority_end..];
    let base_path = base_path_query.split('?').next().unwrap_or("");
    if reference.is_empty() {
        return base.to_string();
    }
    if reference.starts_with('?') {
        return format!("{origin}{base_path}{reference}");
    }
    let (ref_path, query) = match reference.find('?') {
        Some(i) => (&reference[..i], &reference[i..]),
        None => (reference, ""),
    };
    let merged = if ref_path.starts_with('/') {
        ref_path.to_string()
    } else {
        let dir = base_path.rfind('/').map(|i| &base_path[..=i]).unwrap_or("/");
        format!("{dir}{ref_path}")
    };
    format!("{origin}{}{query}", remove_dots(&merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_a_request_needs() {
        let u = HttpUrl::parse("https://user:p%40ss@Example.com:8443/live/a.m3u8?token=x#frag").unwrap();
        assert!(u.https);
        assert_eq!((u.host.as_str(), u.port), ("Example.com", 8443));
        assert_eq!(u.target, "/live/a.m3u8?token=x");
        assert_eq!(u.userinfo.as_deref(), Some("user:p%40ss"));
        assert_eq!(u.host_header(), "Example.com:8443");
        let v6 = HttpUrl::parse("http://[::1]/x").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.host_header().as_str()), ("::1", 80, "[::1]"));
        assert_eq!(HttpUrl::parse("http://h?q=1").unwrap().target, "/?q=1");
        for refused in ["rtmp://h/x", "http://a@b@c/x", "http://h\\@i/x", "file:///etc/passwd"] {
            assert!(HttpUrl::parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn joins_like_rfc_3986() {
        let base = "http://a.b:8080/live/sub/index.m3u8?t=1";
        assert_eq!(join(base, "seg1.ts"), "http://a.b:8080/live/sub/seg1.ts");
        assert_eq!(join(base, "../x/seg.ts?k=2"), "http://a.b:8080/live/x/seg.ts?k=2");
        assert_eq!(join(base, "../../../../etc"), "http://a.b:8080/etc");
        assert_eq!(join(base, "/root.ts"), "http://a.b:8080/root.ts");
        assert_eq!(join(base, "//other.host/x.ts"), "http://other.host/x.ts");
        assert_eq!(join(base, "https://c.d/e.ts"), "https://c.d/e.ts");
        assert_eq!(join(base, "?t=2"), "http://a.b:8080/live/sub/index.m3u8?t=2");
        assert_eq!(join(base, "./v/./a.m3u8"), "http://a.b:8080/live/sub/v/a.m3u8");
        assert_eq!(join("http://h", "a.ts"), "http://h/a.ts");
        assert_eq!(join(base, "data:text/plain,x"), "data:text/plain,x");
    }
}
