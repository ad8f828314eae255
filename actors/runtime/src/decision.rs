//! What happens to a message once its work is done or has failed: a pure function from the
//! item's outcome and delivery count to an acknowledgement, so every branch is tested here
//! without NATS or a model.

use crate::backoff::Backoff;
use std::time::Duration;

/// How one message's work ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    /// Its results are on the bus or in the store.
    Done,
    /// Its results could not be published; the work is repeated.
    PublishFailed,
    /// The model failed on it, for this reason.
    Failed(&'a str),
    /// The model ran past its time limit; the retry goes to the fallback.
    TimedOut,
    /// It was due for the dead-letter subject, but writing there failed.
    DeadLetterFailed,
    /// It is not a message this worker can read (a sink drops it, visibly).
    Undecodable,
    /// The store refused the batch, the `failures`-th time in a row.
    StoreDown { failures: u32 },
}

/// The acknowledgement a message gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Ack,
    /// Redeliver after this delay.
    Nak(Duration),
    /// Copy it to the dead-letter subject with this error, then terminate it.
    DeadLetter(String),
    /// Terminate it: never redelivered.
    Term,
}

/// A worker's retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Deliveries before a failed item is dead-lettered; 0 or less: retry forever.
    pub max_deliver: i64,
    /// Delay before redelivering an item the model failed on, by delivery count.
    pub failed: Backoff,
    pub publish_retry: Duration,
    pub timeout_retry: Duration,
    pub dead_letter_retry: Duration,
    /// Delay before redelivering a batch the store refused, by consecutive failures.
    pub store: Backoff,
}

impl RetryPolicy {
    /// Inference pools: 200 ms doubling to 25.6 s between tries of a failed item.
    pub fn inference(max_deliver: i64) -> Self {
        Self {
            max_deliver,
            failed: Backoff::new(Duration::from_millis(200), Duration::from_millis(200 << 7)),
            publish_retry: Duration::from_secs(1),
            timeout_retry: Duration::from_millis(100),
            dead_letter_retry: Duration::from_secs(5),
            store: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }

    /// Sinks: never give up on an event because a store was down; `retry_initial` doubling to 30 s.
    pub fn sink(retry_initial: Duration) -> Self {
        Self { store: Backoff::new(retry_initial, Duration::from_secs(30)), ..Self::inference(-1) }
    }
}

/// The acknowledgement for a message whose work ended with `outcome`, delivered `delivered`
/// times so far (1 on the first try).
pub fn decide(outcome: Outcome<'_>, delivered: i64, policy: &RetryPolicy) -> Action {
    match outcome {
        Outcome::Done => Action::Ack,
        Outcome::PublishFailed => Action::Nak(policy.publish_retry),
        Outcome::TimedOut if policy.max_deliver > 0 && delivered >= policy.max_deliver => {
            Action::DeadLetter(format!("ran past the model's time limit on each of {delivered} tries"))
        }
        Outcome::TimedOut => Action::Nak(policy.timeout_retry),
        Outcome::DeadLetterFailed => Action::Nak(policy.dead_letter_retry),
        Outcome::Undecodable => Action::Term,
        Outcome::StoreDown { failures } => Action::Nak(policy.store.base(failures)),
        Outcome::Failed(error) if policy.max_deliver > 0 && delivered >= policy.max_deliver => {
            Action::DeadLetter(error.to_string())
        }
        Outcome::Failed(_) => Action::Nak(policy.failed.base(delivered.clamp(1, 64) as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn done_is_acked() {
        assert_eq!(decide(Outcome::Done, 1, &RetryPolicy::inference(5)), Action::Ack);
        assert_eq!(decide(Outcome::Done, 9, &RetryPolicy::sink(ms(500))), Action::Ack);
    }

    #[test]
    fn failed_items_back_off_by_delivery_until_the_last_try() {
        let p = RetryPolicy::inference(5);
        let naks: Vec<Action> = (1..5).map(|d| decide(Outcome::Failed("bad frame"), d, &p)).collect();
        assert_eq!(naks, [ms(200), ms(400), ms(800), ms(1600)].map(Action::Nak));
        assert_eq!(decide(Outcome::Failed("bad frame"), 5, &p), Action::DeadLetter("bad frame".into()));
        // Past the limit (the server delivers once more than max_deliver) it still goes to the DLQ.
        assert_eq!(decide(Outcome::Failed("x"), 6, &p), Action::DeadLetter("x".into()));
    }

    #[test]
    fn failed_backoff_is_capped() {
        let p = RetryPolicy::inference(100);
        assert_eq!(decide(Outcome::Failed("x"), 50, &p), Action::Nak(ms(25_600)));
        assert_eq!(decide(Outcome::Failed("x"), 0, &p), Action::Nak(ms(200)));
    }

    #[test]
    fn without_max_deliver_failures_retry_forever() {
        let p = RetryPolicy::inference(0);
        assert_eq!(decide(Outcome::Failed("x"), 1_000, &p), Action::Nak(ms(25_600)));
        let p = RetryPolicy::inference(-1);
        assert!(matches!(decide(Outcome::Failed("x"), 1_000, &p), Action::Nak(_)));
    }

    #[test]
    fn publish_timeout_and_dead_letter_failures_retry_at_fixed_delays() {
        let p = RetryPolicy::inference(3);
        assert_eq!(decide(Outcome::PublishFailed, 3, &p), Action::Nak(Duration::from_secs(1)));
        assert_eq!(decide(Outcome::TimedOut, 2, &p), Action::Nak(ms(100)));
        assert_eq!(decide(Outcome::DeadLetterFailed, 3, &p), Action::Nak(Duration::from_secs(5)));
    }

    #[test]
    fn timeouts_go_to_the_dead_letter_subject_on_the_last_try() {
        let p = RetryPolicy::inference(3);
        assert_eq!(decide(Outcome::TimedOut, 2, &p), Action::Nak(ms(100)));
        let Action::DeadLetter(why) = decide(Outcome::TimedOut, 3, &p) else { panic!("not dead-lettered") };
        assert!(why.contains("time limit") && why.contains('3'), "{why}");
        assert_eq!(decide(Outcome::TimedOut, 99, &RetryPolicy::inference(-1)), Action::Nak(ms(100)));
    }

    #[test]
    fn undecodable_messages_are_terminated() {
        assert_eq!(decide(Outcome::Undecodable, 1, &RetryPolicy::sink(ms(500))), Action::Term);
    }

    #[test]
    fn a_store_outage_doubles_the_wait_up_to_30_s() {
        let p = RetryPolicy::sink(ms(500));
        let got: Vec<Action> =
            [1, 2, 3, 7, 20].iter().map(|&f| decide(Outcome::StoreDown { failures: f }, 1, &p)).collect();
        assert_eq!(got, [ms(500), ms(1000), ms(2000), ms(30_000), ms(30_000)].map(Action::Nak));
    }
}
