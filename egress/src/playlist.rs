//! HLS playlists under limits: size, segments, variants and nesting are checked on every fetch
//! (registration and every live refresh), and every URI a playlist names (variants, renditions,
//! segments, keys, init sections, parts) is resolved, checked and rewritten so that it can only be
//! fetched through the egress proxy.

use crate::url::join;
use sightline_policy::redact_url;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlaylistError {
    #[error("playlist is larger than {0} bytes")]
    TooLarge(u64),
    #[error("playlist lists {got} segments; at most {max} are accepted")]
    TooManySegments { got: usize, max: usize },
    #[error("playlist lists {got} variants; at most {max} are accepted")]
    TooManyVariants { got: usize, max: usize },
    #[error("a variant playlist is itself a master playlist (nested playlists are refused)")]
    Nested,
    #[error("playlist names `{uri}`: {reason}")]
    BadUri { uri: String, reason: String },
}

#[derive(Debug, Clone, Copy)]
pub struct PlaylistLimits {
    pub max_bytes: u64,
    pub max_segments: usize,
    pub max_variants: usize,
}

/// What a URI in a playlist points at, which decides how the proxy serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriKind {
    /// Another playlist (a variant or a rendition): checked and rewritten in turn.
    Playlist,
    /// Media bytes (a segment, a key, an init section): passed through under a byte cap.
    Media,
}

/// Whether the text is an HLS playlist (what GStreamer's type finder would take for one).
pub fn looks_like_playlist(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    body[start..].starts_with(b"#EXTM3U")
}

/// Whether a playlist is a master (lists variants) rather than a media playlist.
pub fn is_master(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("#EXT-X-STREAM-INF") || l.starts_with("#EXT-X-I-FRAME-STREAM-INF"))
}

/// Checks a playlist's text against the limits.
pub fn check_text(text: &str, limits: &PlaylistLimits) -> Result<(), PlaylistError> {
    if text.len() as u64 > limits.max_bytes {
        return Err(PlaylistError::TooLarge(limits.max_bytes));
    }
    let segments = text.lines().filter(|l| l.starts_with("#EXTINF")).count();
    if segments > limits.max_segments {
        return Err(PlaylistError::TooManySegments { got: segments, max: limits.max_segments });
    }
    let variants =
        text.lines().filter(|l| l.starts_with("#EXT-X-STREAM-INF") || l.starts_with("#EXT-X-MEDIA:")).count();
    if variants > limits.max_variants {
        return Err(PlaylistError::TooManyVariants { got: variants, max: limits.max_variants });
    }
    Ok(())
}

/// Resolves one URI against the playlist's URL and checks that it is a plain http(s) URL.
fn resolve(base: &str, uri: &str) -> Result<String, PlaylistError> {
    let absolute = join(base, uri);
    crate::url::HttpUrl::parse(&absolute)
        .map_err(|e| PlaylistError::BadUri { uri: redact_url(&absolute), reason: e.to_string() })?;
    Ok(absolute)
}

/// Tags whose `URI` attribute names another playlist; every other tag's `URI` names media.
const PLAYLIST_TAGS: [&str; 3] = ["#EXT-X-MEDIA:", "#EXT-X-I-FRAME-STREAM-INF:", "#EXT-X-RENDITION-REPORT:"];

fn rewrite_attributes(
    line: &str,
    base: &str,
    kind: UriKind,
    map: &mut impl FnMut(UriKind, &str) -> String,
) -> Result<String, PlaylistError> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("URI=\"") {
        let value_start = i + 5;
        let len = rest[value_start..].find('"').ok_or_else(|| PlaylistError::BadUri {
            uri: String::new(),
            reason: "unterminated URI attribute".into(),
        })?;
        let uri = &rest[value_start..value_start + len];
        out.push_str(&rest[..value_start]);
        out.push_str(&map(kind, &resolve(base, uri)?));
        rest = &rest[value_start + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Rewrites every URI of a playlist fetched from `base` through `map(kind, absolute_url)`.
/// A URI that is not a plain http(s) URL (another scheme, a host parsers read differently)
/// refuses the whole playlist.
pub fn rewrite(
    text: &str,
    base: &str,
    mut map: impl FnMut(UriKind, &str) -> String,
) -> Result<String, PlaylistError> {
    let master = is_master(text);
    let line_kind = if master { UriKind::Playlist } else { UriKind::Media };
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.push('\n');
            continue;
        }
        if trimmed.starts_with('#') {
            if trimmed.contains("URI=\"") {
                let kind = if PLAYLIST_TAGS.iter().any(|t| trimmed.starts_with(t)) {
                    UriKind::Playlist
                } else {
                    UriKind::Media
                };
                out.push_str(&rewrite_attributes(trimmed, base, kind, &mut map)?);
            } else {
                out.push_str(trimmed);
            }
        } else {
            out.push_str(&map(line_kind, &resolve(base, trimmed)?));
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PlaylistLimits = PlaylistLimits { max_bytes: 10_000, max_segments: 3, max_variants: 2 };

    #[test]
    fn counts_segments_and_variants() {
        let media = "#EXTM3U\n#EXTINF:1,\na.ts\n#EXTINF:1,\nb.ts\n";
        assert_eq!(check_text(media, &LIMITS), Ok(()));
        let long = "#EXTM3U\n".to_string() + &"#EXTINF:1,\nx.ts\n".repeat(4);
        assert_eq!(check_text(&long, &LIMITS), Err(PlaylistError::TooManySegments { got: 4, max: 3 }));
        let master = "#EXTM3U\n".to_string() + &"#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n".repeat(3);
        assert_eq!(check_text(&master, &LIMITS), Err(PlaylistError::TooManyVariants { got: 3, max: 2 }));
        assert_eq!(check_text(&"#".repeat(10_001), &LIMITS), Err(PlaylistError::TooLarge(10_000)));
        assert!(looks_like_playlist(b"\xEF\xBB\xBF \n#EXTM3U\n") && !looks_like_playlist(b"<MPD>"));
    }

    #[test]
    fn rewrites_every_uri_with_its_kind() {
        let base = "http://cdn.example/live/index.m3u8";
        let media = "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\",IV=0x1\n#EXT-X-MAP:URI=\"/init.mp4\"\n#EXTINF:1,\nseg1.ts\n\n#EXT-X-RENDITION-REPORT:URI=\"../alt/index.m3u8\",LAST-MSN=1\n";
        let mut seen = Vec::new();
        let out = rewrite(media, base, |k, u| {
            seen.push((k, u.to_string()));
            format!("P{}", seen.len())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (UriKind::Media, "http://cdn.example/live/key.bin".into()),
                (UriKind::Media, "http://cdn.example/init.mp4".into()),
                (UriKind::Media, "http://cdn.example/live/seg1.ts".into()),
                (UriKind::Playlist, "http://cdn.example/alt/index.m3u8".into()),
            ]
        );
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"P1\",IV=0x1\n#EXT-X-MAP:URI=\"P2\"\n#EXTINF:1,\nP3\n\n#EXT-X-RENDITION-REPORT:URI=\"P4\",LAST-MSN=1\n"
        );
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",URI=\"audio.m3u8\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttps://other.example/v.m3u8\n";
        let mut kinds = Vec::new();
        rewrite(master, base, |k, _| {
            kinds.push(k);
            String::new()
        })
        .unwrap();
        assert_eq!(kinds, vec![UriKind::Playlist, UriKind::Playlist]);
    }

    #[test]
    fn refuses_uris_that_are_not_plain_http() {
        let base = "http://cdn.example/live/index.m3u8";
        for hostile in [
            "#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"skd://key\"\n",
            "#EXTM3U\n#EXTINF:1,\nhttp://a@b@127.0.0.1/x.ts\n",
            "#EXTM3U\n#EXTINF:1,\nhttp://h\\@127.0.0.1/x.ts\n",
            "#EXTM3U\n#EXT-X-MAP:URI=\"data:video/mp4;base64,AAAA\"\n",
            "#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"unterminated\n",
        ] {
            let err = rewrite(hostile, base, |_, u| u.to_string()).unwrap_err();
            assert!(matches!(err, PlaylistError::BadUri { .. }), "{hostile}: {err}");
        }
    }
}
