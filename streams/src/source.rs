//! Validation of user-supplied stream URLs, before anything is started for them.

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
    fn files_only_when_allowed() {
        let mut a = allowed();
        a.push("file".into());
        let u = validate_url("file:///tmp/x.mp4", &a).unwrap();
        assert!(!u.live);
    }
}
