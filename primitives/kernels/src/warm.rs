//! Keeps rayon's other workers awake between the parallel layers of an inference.
//!
//! An idle rayon worker yields some thirty times (tens of microseconds) and then sleeps; the
//! next layer's parallel loop must wake it through the kernel, which on a virtual machine costs
//! a cross-CPU interrupt and a host reschedule, and a late worker that steals a large task
//! holds the whole layer up. MobileNetV2 runs fifty layers of 20–400 µs with serial work
//! between them, so it paid that at nearly every layer. Here each other worker runs a
//! *spinner* while parallel layers keep coming: a job that executes whatever work appears in
//! the pool (`rayon::yield_now`) and gives the thread back [`WARM_FOR`] after the last parallel
//! layer began. ONNX Runtime's thread pool spins between operators for the same reason.
//!
//! Spinning changes when work runs, never what it computes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a spinner outlives the last parallel layer: longer than the serial gaps between
/// an inference's layers, short enough that an idle node does not keep a core busy.
const WARM_FOR: Duration = Duration::from_micros(500);

/// When the last parallel layer began, in nanoseconds since [`epoch`].
static LAST_LAYER: AtomicU64 = AtomicU64::new(0);

/// Spinners running or queued.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Called as a parallel layer begins: notes the time and starts a spinner for each other
/// worker that has none.
pub fn parallel_layer() {
    LAST_LAYER.store(now(), Ordering::Relaxed);
    let others = rayon::current_num_threads().saturating_sub(1);
    let caller = rayon::current_thread_index();
    loop {
        let running = SPINNERS.load(Ordering::Relaxed);
        if running >= others {
            return;
        }
        if SPINNERS
            .compare_exchange(running, running + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            rayon::spawn(move || spin(caller));
        }
    }
}

/// A spinner's loop: executes the pool's work as it appears until [`WARM_FOR`] has passed
/// since the last parallel layer began. One that finds itself on the thread that asked for it
/// (which took it back from its own queue) ends at once: that thread has a layer to finish.
fn spin(caller: Option<usize>) {
    if rayon::current_thread_index() != caller {
        let warm_for = WARM_FOR.as_nanos() as u64;
        loop {
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => continue,
                Some(rayon::Yield::Idle) => {
                    if now().saturating_sub(LAST_LAYER.load(Ordering::Relaxed)) > warm_for {
                        break;
                    }
                    std::hint::spin_loop();
                }
                None => break,
            }
        }
    }
    SPINNERS.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinners_fill_the_other_workers_and_give_them_back_once_layers_stop() {
        parallel_layer();
        let others = rayon::current_num_threads().saturating_sub(1);
        assert!(SPINNERS.load(Ordering::Acquire) <= others);
        // The spinners end WARM_FOR after the last parallel layer (other tests' layers may
        // keep them a little longer, never for good): a liveness check, not a timing one.
        let deadline = Instant::now() + Duration::from_secs(120);
        while SPINNERS.load(Ordering::Acquire) > 0 {
            assert!(Instant::now() < deadline, "a spinner outlived every layer");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
