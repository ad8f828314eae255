//! How close the events stream is to discarding events a sink has not written yet. The events
//! stream is bounded (bytes and age, discard old), so during a long store outage its oldest
//! unsunk events would be dropped by JetStream: this measures that risk before it happens (how
//! full the stream is with unsunk events) and counts what was lost when it did.

use crate::connection::{Bus, BusError, js_err};
use async_nats::jetstream::consumer::PullConsumer;
use serde::Serialize;

/// Above this fill, `/readyz` reports the events stream as degraded.
pub const WARN_FILL: f64 = 0.8;

/// One look at the events stream and one sink's consumer on it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Retention {
    /// Events the sink has not acknowledged (pending + in flight).
    pub unsunk: u64,
    /// Share of the stream's byte limit that unsunk events take (estimated from the average size).
    pub bytes_fill: f64,
    /// Age of the oldest unsunk event against the stream's age limit.
    pub age_fill: f64,
    /// The larger of the two: at 1.0 JetStream starts discarding unsunk events.
    pub fill: f64,
    /// Stream sequences the sink never acknowledged that are no longer in the stream: events
    /// discarded before the sink had them (exact up to acks out of order at the floor).
    pub discarded_unsunk: u64,
    /// The stream's first sequence (for [`LossCounter`]).
    #[serde(skip)]
    pub first_seq: u64,
    #[serde(skip)]
    pub ack_floor: u64,
}

/// Measures the retention risk for `consumer` (a sink's durable consumer on the events stream).
pub async fn events_retention(bus: &Bus, consumer: &str) -> Result<Retention, BusError> {
    let what = format!("stream {}", bus.names.events_stream());
    let mut stream = bus.js.get_stream(bus.names.events_stream()).await.map_err(js_err(&what))?;
    let info = stream.info().await.map_err(js_err(&what))?.clone();
    let mut c: PullConsumer = stream
        .get_consumer(consumer)
        .await
        .map_err(|source| BusError::JetStream { what: format!("consumer {consumer}"), source })?;
    let ci = c.info().await.map_err(js_err(format!("consumer {consumer}")))?.clone();
    let state = &info.state;
    let unsunk = ci.num_pending + ci.num_ack_pending as u64;
    let avg = if state.messages > 0 { state.bytes as f64 / state.messages as f64 } else { 0.0 };
    let max_bytes = info.config.max_bytes;
    let bytes_fill = if max_bytes > 0 { unsunk as f64 * avg / max_bytes as f64 } else { 0.0 };
    let floor = ci.ack_floor.stream_sequence;
    let max_age = info.config.max_age.as_secs_f64();
    let age_fill = if unsunk > 0 && max_age > 0.0 {
        // The oldest unsunk event is the first one above the ack floor that is still stored.
        let oldest = (floor + 1).max(state.first_sequence);
        match stream.get_raw_message(oldest).await {
            Ok(m) => {
                let age = time::OffsetDateTime::now_utc() - m.time;
                (age.as_seconds_f64() / max_age).max(0.0)
            }
            Err(_) => 0.0,
        }
    } else {
        0.0
    };
    let discarded_unsunk = state.first_sequence.saturating_sub(floor + 1);
    Ok(Retention {
        unsunk,
        bytes_fill,
        age_fill,
        fill: bytes_fill.max(age_fill),
        discarded_unsunk,
        first_seq: state.first_sequence,
        ack_floor: floor,
    })
}

/// Turns successive [`Retention`] looks into a monotonic count of events discarded unsunk, each
/// counted once.
#[derive(Debug, Default)]
pub struct LossCounter {
    counted_upto: u64,
}

impl LossCounter {
    /// Events newly known to be lost since the last look.
    pub fn observe(&mut self, r: &Retention) -> u64 {
        let lost_to = r.first_seq.saturating_sub(1);
        let from = (r.ack_floor + 1).max(self.counted_upto + 1);
        let new = (lost_to + 1).saturating_sub(from);
        self.counted_upto = self.counted_upto.max(lost_to);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(first_seq: u64, ack_floor: u64) -> Retention {
        Retention {
            unsunk: 0,
            bytes_fill: 0.0,
            age_fill: 0.0,
            fill: 0.0,
            discarded_unsunk: 0,
            first_seq,
            ack_floor,
        }
    }

    #[test]
    fn counts_each_discarded_event_once() {
        let mut c = LossCounter::default();
        assert_eq!(c.observe(&look(1, 0)), 0, "nothing discarded");
        assert_eq!(c.observe(&look(50, 60)), 0, "discarded after the sink had them");
        assert_eq!(c.observe(&look(101, 70)), 30, "71..=100 were never sunk");
        assert_eq!(c.observe(&look(101, 70)), 0, "counted once");
        assert_eq!(c.observe(&look(151, 70)), 50);
        // The sink catches up past the floor: nothing new is lost.
        assert_eq!(c.observe(&look(160, 300)), 0);
    }
}
