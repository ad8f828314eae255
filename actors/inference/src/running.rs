//! Running one batch on a model: on a blocking thread, a panic turned into failed items, an
//! optional timeout, the CPU time the thread spent and the time it waited for a core.

use crate::extra::{ExtraParts, extra_since};
use crate::pool::{ItemError, ItemResult, Processor};
use crate::shedding::Pace;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) type BatchResults = Vec<ItemResult>;

/// CPU time the calling thread has used so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live one.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// Time the calling thread has spent runnable but waiting for a core so far (the second field of
/// `/proc/thread-self/schedstat`); None where the kernel does not keep it.
fn thread_run_queue_wait() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    run_queue_wait(&stat)
}

/// The run-queue wait in a schedstat line: "<on a core, ns> <waiting for one, ns> <timeslices>".
fn run_queue_wait(stat: &str) -> Option<Duration> {
    stat.split_whitespace().nth(1)?.parse().ok().map(Duration::from_nanos)
}

/// What a batch's model run gives back: the results, the model that ran, whether it ran coarser
/// than configured (behind its target), the CPU time its thread spent, and the time that thread
/// was ready to run but waited for a core (None where the kernel does not keep it).
pub(crate) struct Ran {
    pub(crate) results: BatchResults,
    pub(crate) model: String,
    pub(crate) coarse: bool,
    pub(crate) cpu: Duration,
    pub(crate) waited: Option<Duration>,
    /// Extra work that stops short at the batch's `extra_until`, by kind
    /// ([`Processor::extra_work`]).
    pub(crate) extra_parts: ExtraParts,
}

/// Runs `payloads` on one model on a blocking thread; None when it ran past `timeout` (the thread
/// finishes on its own; its results are dropped). A panic in the model fails every item of the
/// batch with the panic's message, so the items are retried and, past `max_deliver`,
/// dead-lettered like any other failure (never dropped by a crash loop).
pub(crate) async fn run_model<P: Processor>(
    processor: &Arc<Mutex<P>>,
    payloads: Vec<bytes::Bytes>,
    timeout: Option<Duration>,
    (pace, extra_until): (Pace, Option<std::time::Instant>),
) -> Result<Option<Ran>, tokio::task::JoinError> {
    let n = payloads.len();
    let processor = processor.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut p = processor.lock().unwrap_or_else(|e| e.into_inner());
        let coarse = p.set_pace(pace);
        p.set_extra_until(extra_until);
        let model = p.model().to_string();
        let (cpu_before, wait_before, extra_before) =
            (thread_cpu_time(), thread_run_queue_wait(), p.extra_work());
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.process_batch(&payloads)));
        let cpu = thread_cpu_time().saturating_sub(cpu_before);
        let extra_parts = extra_since(&p.extra_work(), &extra_before);
        let waited = wait_before.zip(thread_run_queue_wait()).map(|(a, b)| b.saturating_sub(a));
        let results = ran.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(%model, panic = %what, "the model panicked; its batch is failed and retried");
            (0..n).map(|_| Err(ItemError(format!("the model panicked: {what}")))).collect()
        });
        Ran { results, model, coarse, cpu, waited, extra_parts }
    });
    match timeout {
        Some(t) => match tokio::time::timeout(t, task).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        },
        None => task.await.map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extra::ExtraWork;

    /// Fails on payloads that say so, panics on the ones that say "boom".
    struct Fragile;

    impl Processor for Fragile {
        fn kind(&self) -> &'static str {
            "fragile"
        }
        fn model(&self) -> &str {
            "fragile@1"
        }
        fn process(&mut self, payload: &[u8]) -> ItemResult {
            match payload {
                b"boom" => panic!("index out of range in postprocessing"),
                b"bad" => Err(ItemError("bad input".into())),
                _ => Ok(Vec::new()),
            }
        }
    }

    #[tokio::test]
    async fn a_panicking_model_fails_its_batch_items_and_stays_usable() {
        let p = Arc::new(Mutex::new(Fragile));
        let batch = ["ok", "boom", "ok"].map(|s| bytes::Bytes::from_static(s.as_bytes())).to_vec();
        let Ran { results, model, .. } =
            run_model(&p, batch, None, (Pace::Ahead, None)).await.unwrap().unwrap();
        assert_eq!(model, "fragile@1");
        assert_eq!(results.len(), 3);
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(e.0.contains("panicked") && e.0.contains("index out of range"), "{}", e.0);
        }
        // The same processor serves the next batch.
        let again = vec![bytes::Bytes::from_static(b"ok"), bytes::Bytes::from_static(b"bad")];
        let Ran { results, .. } = run_model(&p, again, None, (Pace::Ahead, None)).await.unwrap().unwrap();
        assert!(results[0].is_ok() && results[1].as_ref().unwrap_err().0 == "bad input");
    }

    /// Does 200 ms of optional work an item (on a clock of its own that starts with the batch:
    /// no sleeping) while its batch's `extra_until` leaves 200 ms, and counts what it leaves.
    #[derive(Default)]
    struct Judging {
        until: Option<std::time::Instant>,
        clock: Option<std::time::Instant>,
        total: ExtraWork,
    }

    impl Processor for Judging {
        fn kind(&self) -> &'static str {
            "judging"
        }
        fn model(&self) -> &str {
            "judging@1"
        }
        fn set_extra_until(&mut self, until: Option<std::time::Instant>) {
            self.until = until;
            self.clock = Some(std::time::Instant::now());
        }
        fn extra_work(&self) -> ExtraParts {
            vec![("judging", self.total)]
        }
        fn process(&mut self, _: &[u8]) -> ItemResult {
            let cost = Duration::from_millis(200);
            let now = self.clock.get_or_insert_with(std::time::Instant::now);
            if self.until.is_none_or(|u| *now + cost <= u) {
                *now += cost;
                self.total.done += 1;
                self.total.spent += cost;
            } else {
                self.total.no_room += 1;
            }
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_batch_reports_its_own_extra_work_and_what_it_left() {
        let p = Arc::new(Mutex::new(Judging::default()));
        let three = || vec![bytes::Bytes::from_static(b"x"); 3];
        // Room for two of the three (550 ms: the second ends by 550 ms while the batch starts
        // within 150 ms, the third would end past 600).
        let until = Some(std::time::Instant::now() + Duration::from_millis(550));
        let ran = run_model(&p, three(), None, (Pace::Ahead, until)).await.unwrap().unwrap();
        let judged = |ran: &Ran| {
            assert_eq!(ran.extra_parts.len(), 1);
            assert_eq!(ran.extra_parts[0].0, "judging");
            ran.extra_parts[0].1
        };
        let w = judged(&ran);
        assert_eq!((w.done, w.no_room, w.spent), (2, 1, Duration::from_millis(400)));
        // The next batch's are its own, not the totals; on time there is no room.
        let now = Some(std::time::Instant::now());
        let ran = run_model(&p, three(), None, (Pace::OnTime, now)).await.unwrap().unwrap();
        assert_eq!(judged(&ran), ExtraWork { done: 0, no_room: 3, spent: Duration::ZERO });
        let one = vec![bytes::Bytes::from_static(b"x")];
        let ran = run_model(&p, one, None, (Pace::Ahead, None)).await.unwrap().unwrap();
        assert_eq!((judged(&ran).done, judged(&ran).no_room), (1, 0), "no bound without a lag target");
    }

    /// Sleeps through its batch, or computes until its thread has used `cpu` of CPU time.
    struct Timed {
        sleep: Duration,
        cpu: Duration,
    }

    impl Processor for Timed {
        fn kind(&self) -> &'static str {
            "timed"
        }
        fn model(&self) -> &str {
            "timed@1"
        }
        fn process(&mut self, _: &[u8]) -> ItemResult {
            std::thread::sleep(self.sleep);
            let start = thread_cpu_time();
            let mut x = 0u64;
            while thread_cpu_time().saturating_sub(start) < self.cpu {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_batch_reports_the_cpu_time_of_the_thread_it_ran_on_not_its_wall_time() {
        let one = || vec![bytes::Bytes::from_static(b"x")];
        let sleeper = Arc::new(Mutex::new(Timed { sleep: Duration::from_millis(150), cpu: Duration::ZERO }));
        let ran = run_model(&sleeper, one(), None, (Pace::OnTime, None)).await.unwrap().unwrap();
        assert!(ran.cpu < Duration::from_millis(50), "asleep, not computing: {:?}", ran.cpu);
        let worker = Arc::new(Mutex::new(Timed { sleep: Duration::ZERO, cpu: Duration::from_millis(60) }));
        let ran = run_model(&worker, one(), None, (Pace::OnTime, None)).await.unwrap().unwrap();
        assert!(ran.cpu >= Duration::from_millis(60), "the model's thread computed 60 ms: {:?}", ran.cpu);
    }

    /// Pins its thread to the first core and computes `cpu` of CPU time there while another
    /// thread, pinned to the same core, spins: the two take turns.
    struct Crowded {
        cpu: Duration,
    }

    /// Pins the calling thread to the first core it may run on (not necessarily core 0 in a
    /// container whose cpuset leaves it out).
    fn pin_to_first_core() {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity, CPU_ISSET, CPU_SET
        // and sched_setaffinity only read and write the sets passed by pointer (pid 0: the
        // calling thread).
        unsafe {
            let mut allowed: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut allowed), 0, "the thread's cores");
            let first = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &allowed)).unwrap();
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(first, &mut one);
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0, "pinned to core {first}");
        }
    }

    impl Processor for Crowded {
        fn kind(&self) -> &'static str {
            "crowded"
        }
        fn model(&self) -> &str {
            "crowded@1"
        }
        fn process(&mut self, _: &[u8]) -> ItemResult {
            pin_to_first_core();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let spinner = {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin_to_first_core();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            };
            Timed { sleep: Duration::ZERO, cpu: self.cpu }.process(b"x")?;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            spinner.join().unwrap();
            Ok(Vec::new())
        }
    }

    #[test]
    fn the_run_queue_wait_is_the_second_schedstat_field() {
        assert_eq!(run_queue_wait("851684 61434 1\n"), Some(Duration::from_nanos(61434)));
        assert_eq!(run_queue_wait("851684"), None);
        assert_eq!(run_queue_wait(""), None);
    }

    #[tokio::test]
    async fn a_batch_reports_the_time_its_thread_waited_for_a_core() {
        if thread_run_queue_wait().is_none() {
            // A kernel without schedstat: the wait is reported as unknown, never as zero.
            let p = Arc::new(Mutex::new(Crowded { cpu: Duration::from_millis(10) }));
            let ran = run_model(&p, vec![bytes::Bytes::from_static(b"x")], None, (Pace::OnTime, None))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ran.waited, None);
            return;
        }
        let one = || vec![bytes::Bytes::from_static(b"x")];
        let sleeper = Arc::new(Mutex::new(Timed { sleep: Duration::from_millis(150), cpu: Duration::ZERO }));
        let ran = run_model(&sleeper, one(), None, (Pace::OnTime, None)).await.unwrap().unwrap();
        let waited = ran.waited.expect("schedstat is kept here");
        assert!(waited < Duration::from_millis(75), "asleep is not waiting for a core: {waited:?}");
        // Sharing one core with a spinning thread, 80 ms of computing waits about as long again.
        let crowded = Arc::new(Mutex::new(Crowded { cpu: Duration::from_millis(80) }));
        let ran = run_model(&crowded, one(), None, (Pace::OnTime, None)).await.unwrap().unwrap();
        let waited = ran.waited.expect("schedstat is kept here");
        assert!(waited >= Duration::from_millis(40), "took turns with a spinning thread: {waited:?}");
    }
}
