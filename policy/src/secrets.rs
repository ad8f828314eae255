//! Credentials in URLs: a stream URL (`rtmp://user:pass@host/…`, `https://host/live.m3u8?token=…`)
//! or a service URL (`redis://:password@host`) is stored whole where it must be used, and shown
//! redacted everywhere else: the userinfo and every query value become `***`.

/// What stands in for a secret.
pub const MASK: &str = "***";

/// `url` with its userinfo and every query value masked; host, port and path kept.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{MASK}@{host}"),
        None => authority.to_string(),
    };
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((t, f)) => (t, Some(f)),
        None => (tail, None),
    };
    let tail = match before_fragment.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) => format!("{k}={MASK}"),
                    None if kv.is_empty() => String::new(),
                    None => MASK.to_string(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => before_fragment.to_string(),
    };
    let fragment = fragment.map(|_| format!("#{MASK}")).unwrap_or_default();
    format!("{scheme}://{authority}{tail}{fragment}")
}

/// `text` (an error message, a log line) with every secret of `url` masked wherever it appears:
/// the whole URL, its userinfo and its parts, and its query values.
pub fn redact_secrets(text: &str, url: &str) -> String {
    let mut secrets = secret_parts(url);
    // Longest first, so a whole userinfo goes before the password inside it.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.replace(url, &redact_url(url));
    for s in secrets {
        out = out.replace(&s, MASK);
    }
    out
}

/// The secret substrings of a URL: userinfo (whole, user, password) and query and fragment
/// values. Parts shorter than 3 characters are left alone (masking every "1" in a message would
/// garble it and protect nothing).
fn secret_parts(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else { return Vec::new() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut parts = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        parts.push(userinfo.to_string());
        parts.extend(userinfo.split(':').map(str::to_string));
    }
    let (before_fragment, fragment) = tail.split_once('#').unwrap_or((tail, ""));
    if let Some((_, query)) = before_fragment.split_once('?') {
        parts.extend(query.split('&').filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string())));
    }
    parts.push(fragment.to_string());
    let mut decoded: Vec<String> = parts.iter().filter_map(|p| percent_decoded(p)).collect();
    parts.append(&mut decoded);
    parts.retain(|p| p.len() >= 3);
    parts.sort();
    parts.dedup();
    parts
}

/// The percent-decoded form of `s`, when it differs (a secret may appear decoded in a message).
fn percent_decoded(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    String::from_utf8(percent_decode(s)).ok().filter(|d| d != s)
}

/// `%XX` escapes decoded to bytes; anything else (a `%` without two hex digits) kept as written.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_query_values_and_fragments_are_masked() {
        assert_eq!(
            redact_url("rtmp://alice:s3cret@ingest.example:1935/live/key?token=tok123&x=1"),
            "rtmp://***@ingest.example:1935/live/key?token=***&x=***"
        );
        assert_eq!(redact_url("redis://:hunter22@127.0.0.1:6379"), "redis://***@127.0.0.1:6379");
        assert_eq!(redact_url("https://cdn.example/a.m3u8#sig=abc"), "https://cdn.example/a.m3u8#***");
        assert_eq!(redact_url("http://host/live.m3u8"), "http://host/live.m3u8");
        assert_eq!(redact_url("http://host/p?flag&k=v"), "http://host/p?***&k=***");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn secrets_are_masked_wherever_a_message_repeats_them() {
        let url = "http://alice:s3cr%40t@cdn.example/live.m3u8?token=tok123";
        let msg = format!(
            "souphttpsrc: Not Found (404), URL: {url}; auth alice:s3cr%40t failed for user alice, \
             password s3cr@t; retry with token tok123"
        );
        let out = redact_secrets(&msg, url);
        for secret in ["s3cr%40t", "s3cr@t", "tok123", "alice"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("http://***@cdn.example/live.m3u8?token=***"), "{out}");
        assert!(out.contains("Not Found (404)"), "the rest of the message stays: {out}");
    }

    #[test]
    fn short_values_are_not_hunted_through_the_text() {
        let out = redact_secrets("frame 1 of 2 failed", "http://h/p?x=1");
        assert_eq!(out, "frame 1 of 2 failed");
    }
}
