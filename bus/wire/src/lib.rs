//! The JetStream wire contract between Sightline's roles: subject and stream names, the work
//! messages ingest publishes (sampled frames, audio segments), and the events inference emits.
//! Every message carries a deterministic id so redelivery and replays deduplicate.

mod cluster;
mod event;
mod names;
mod rpc;
mod stream;
mod work;

pub use cluster::{Lease, NodeCommand, NodeInfo};
pub use event::*;
pub use names::{Names, VectorSpace};
pub use rpc::*;
pub use stream::{RetryReason, SettledNotice, ShedNotice, ShedReason, StreamState};
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
            cuts: vec![CutCandidate { pts_ms: 1466, score: 0.8, transition: None }],
            incarnation: 0,
            lease: 0,
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
        let meta = AudioMeta {
            stream_id: "s".into(),
            start_ms: 0,
            end_ms: 1,
            wall_ms: 0,
            samples: 3,
            incarnation: 0,
            lease: 0,
            languages: Vec::new(),
        };
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
        // A registration's incarnation keeps a re-registered id's events apart from the old ones.
        let again = StreamRef::new("abc", 0xbeef);
        assert_eq!(Event::make_id(again, EventKind::Transcript, 42), "abc.transcript.42.rbeef");
        let e = Event::new(EventKind::Scene, again, 7, 0, "m@1");
        assert_eq!(
            (e.id.as_str(), e.stream_id.as_str(), e.incarnation),
            ("abc.scene.7.rbeef", "abc", 0xbeef)
        );
        let meta = AudioMeta {
            stream_id: "abc".into(),
            start_ms: 5,
            end_ms: 9,
            wall_ms: 0,
            samples: 1,
            incarnation: 3,
            lease: 0,
            languages: Vec::new(),
        };
        assert_eq!(meta.msg_id(), "abc.audio.5.r3");
        assert_eq!(StreamRef::incarnation_of("abc.ocr.1000.rbeef.2"), 0xbeef);
        assert_eq!(StreamRef::incarnation_of("abc.scene.7.rbeef"), 0xbeef);
        assert_eq!(StreamRef::incarnation_of("abc.scene.7"), 0);
        // Any work message's header reads without its payload.
        let h = WorkHeader::read(&encode(&meta, &[0u8; 4])).unwrap();
        assert_eq!((h.stream_id.as_str(), h.age_ms(100), h.has_cuts()), ("abc", 100 - 4, false));
        assert!(WorkHeader::read(b"garbage").is_none());
        // Old messages (no incarnation field) still read, as incarnation 0.
        let old: Event = serde_json::from_str(r#"{"id":"a.scene.1","kind":"scene","stream_id":"a","pts_ms":1,"wall_ms":0,"score":0,"model":"m"}"#).unwrap();
        assert_eq!(old.incarnation, 0);
        assert_eq!(EventKind::parse("scene"), Some(EventKind::Scene));
        assert_eq!(EventKind::parse("bogus"), None);
    }

    #[test]
    fn event_details_keep_their_wire_shape_and_round_trip() {
        let mut e = Event::new(EventKind::Frame, "s1", 1500, 9, "m@1");
        e.detail = Some(Detail::Frame(FrameInfo {
            keyframe: true,
            phash: "00ff".into(),
            vector: vec![0.5, 0.25],
            labels: vec![Label { name: "cat".into(), score: 0.5 }],
            features: vec![1.0],
            image_text: Vec::new(),
            thumbnail: "Qk0=".into(),
        }));
        e.text_vector = vec![0.1; 3];
        let json: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(json["frame"]["phash"], "00ff", "the detail is a field named after the kind: {json}");
        assert_eq!(json["frame"]["vector"][1], 0.25);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        // ClickHouse's `detail` and the feed leave the vectors and the thumbnail out.
        let stored = e.detail_json();
        assert_eq!(stored, r#"{"keyframe":true,"labels":[{"name":"cat","score":0.5}],"phash":"00ff"}"#);
        let mut restored = Event::new(EventKind::Frame, "s1", 1500, 9, "m@1");
        restored.set_detail_json(&stored);
        assert_eq!(restored.frame().map(|f| (f.keyframe, f.labels.len())), Some((true, 1)));
        let client = e.clone().for_clients();
        assert!(client.text_vector.is_empty());
        let f = client.frame().unwrap();
        assert!(
            f.vector.is_empty() && f.features.is_empty() && f.thumbnail.is_empty() && f.labels.len() == 1
        );
        // Events without details have none on the wire.
        let t = Event::new(EventKind::Transcript, "s1", 0, 0, "m@1");
        let v = serde_json::to_value(&t).unwrap();
        assert!(v.get("frame").is_none() && v.get("ocr").is_none(), "{v}");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap().detail, None);
        // A transcript's language: `"transcript": {"language": …}` on the feed, stored and restored.
        let mut t = Event::new(EventKind::Transcript, "s1", 0, 0, "m@1");
        t.detail = Some(Detail::Transcript(TranscriptInfo { language: "de".into(), language_score: 0.5 }));
        assert_eq!(serde_json::to_value(&t).unwrap()["transcript"]["language"], "de");
        let stored = t.detail_json();
        assert_eq!(stored, r#"{"language":"de","language_score":0.5}"#);
        let mut restored = Event::new(EventKind::Transcript, "s1", 0, 0, "m@1");
        restored.set_detail_json(&stored);
        assert_eq!(restored.transcript().map(|i| i.language.as_str()), Some("de"));
    }

    #[test]
    fn feed_items_keep_event_details() {
        let mut e = Event::new(EventKind::Scene, "s1", 5023, 9, "m@1");
        e.detail = Some(Detail::Scene(SceneInfo { keyframe_id: "s1.frame.5457".into(), transition: None }));
        assert_eq!(e.clone().for_clients(), e, "clients get every detail but a frame's vectors");
        let item = FeedItem { seq: 7, event: e.clone() };
        let text = serde_json::to_string(&item).unwrap();
        let back: FeedItem = serde_json::from_str(&text).unwrap();
        assert_eq!(back.event, e, "{text}");
        let real = r#"{"seq":12,"id":"n1.scene.5023","kind":"scene","stream_id":"n1","pts_ms":5023,"wall_ms":1796169943762,"text":"","score":0.8647443,"model":"cut-detector@1","scene":{"keyframe_id":"n1.frame.5457"}}"#;
        let parsed: FeedItem = serde_json::from_str(real).unwrap();
        assert!(parsed.event.scene().is_some(), "{parsed:?}");
        let published = serde_json::to_vec(&e).unwrap();
        let ev: Event = serde_json::from_slice(&published).unwrap();
        assert_eq!(ev, e);
    }
}
