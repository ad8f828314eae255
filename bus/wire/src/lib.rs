//! The JetStream wire contract between Sightline's roles: subject and stream names, the work
//! messages ingest publishes (sampled frames, audio segments), and the events inference emits.
//! Every message carries a deterministic id so redelivery and replays deduplicate.

mod event;
mod names;
mod rpc;
mod stream;
mod work;

pub use event::*;
pub use names::{Names, VectorSpace};
pub use rpc::*;
pub use stream::{RetryReason, StreamState};
pub use work::*;

/// Wall-clock time, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stable 64-bit hash (FNV-1a) of byte strings fed in order: for ids that must be the same on
/// every node and every run (names to stream ids, batches to deduplication tokens).
pub fn stable_hash<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts
        .into_iter()
        .flatten()
        .fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_validation() {
        let meta = FrameMeta {
            stream_id: "s1".into(),
            pts_ms: 1500,
            wall_ms: 1,
            width: 4,
            height: 2,
            cuts: vec![CutCandidate { pts_ms: 1466, score: 0.8 }],
        };
        let pixels: Vec<u8> = (0..24).collect();
        let msg = encode(&meta, &pixels);
        let (back, px) = decode_frame(&msg).unwrap();
        assert_eq!(back, meta);
        assert_eq!(px, &pixels[..]);
        assert!(matches!(decode_frame(&msg[..msg.len() - 1]), Err(WireError::PayloadSize { .. })));
        assert!(matches!(decode_frame(b"nope"), Err(WireError::BadFrame)));
        let mut bad = msg.clone();
        bad[4] = 200;
        assert!(decode_frame(&bad).is_err());
    }

    #[test]
    fn audio_round_trip() {
        let samples = vec![0.5f32, -0.25, 1.0];
        let meta = AudioMeta { stream_id: "s".into(), start_ms: 0, end_ms: 1, wall_ms: 0, samples: 3 };
        let (m, s) = decode_audio(&encode(&meta, &audio_bytes(&samples))).unwrap();
        assert_eq!(m, meta);
        assert_eq!(s, samples);
    }

    #[test]
    fn names_are_scoped_by_prefix() {
        let n = Names::new("T1");
        assert_eq!(n.frames_subject("abc"), "t1.frames.abc");
        assert_eq!(n.event_subject(EventKind::Scene, "abc"), "t1.events.scene.abc");
        assert_eq!(n.events_filter(None, Some("abc")), "t1.events.*.abc");
        assert_eq!(n.events_stream(), "T1_EVENTS");
        assert_eq!(Event::make_id("abc", EventKind::Transcript, 42), "abc.transcript.42");
        assert_eq!(EventKind::parse("scene"), Some(EventKind::Scene));
        assert_eq!(EventKind::parse("bogus"), None);
    }
}
