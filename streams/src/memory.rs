//! Giving the memory of torn-down pipelines back to the system.
//!
//! A pipeline's buffers, element state and streaming threads' allocations are freed when it is
//! torn down, but glibc keeps freed memory in its arenas (and in the middle of the heap, where it
//! cannot shrink the break), so in a churn of many short-lived pipelines RSS climbed by about
//! 190 KB per pipeline even with `MALLOC_ARENA_MAX=2`. After teardowns a background thread asks
//! glibc to return what it holds free (`malloc_trim`), at most once per [`EVERY`]: trimming walks
//! every arena under its lock, which is cheap next to a pipeline but not free.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Longest wait between a teardown and the trim that follows it.
pub const EVERY: Duration = Duration::from_secs(5);

static TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the trimming after teardowns on or off (on by default; the churn benchmark compares).
pub fn set_trimming(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Trims done since the process started.
pub static TRIMS: AtomicU64 = AtomicU64::new(0);

/// Notes a pipeline torn down; the trimmer thread (started on the first) trims after it.
pub(crate) fn torn_down() {
    TEARDOWNS.fetch_add(1, Ordering::Relaxed);
    static TRIMMER: OnceLock<()> = OnceLock::new();
    TRIMMER.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("sl-mem-trim".into()).spawn(|| {
            let mut seen = 0;
            loop {
                std::thread::sleep(EVERY);
                let now = TEARDOWNS.load(Ordering::Relaxed);
                if now != seen && ENABLED.load(Ordering::Relaxed) {
                    seen = now;
                    trim();
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the memory trimmer; freed memory stays with the allocator");
        }
    });
}

/// Returns the allocator's free memory to the system now (glibc only; elsewhere nothing to do).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only touches the allocator's own state, under its
    // locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    TRIMS.fetch_add(1, Ordering::Relaxed);
}
