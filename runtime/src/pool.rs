//! A small persistent thread pool (feature `std`) for splitting one layer over threads.
//!
//! Spawning a thread per layer costs more than most layers of these models take (measured:
//! about 55 µs per spawn and join on the project's machine), so a session keeps its workers.
//! Between jobs a worker spins briefly (layers follow each other within microseconds during an
//! inference), then sleeps on a condition variable. [`Pool::run`] returns only after every
//! worker has finished the job, which is what makes lending it a borrowed closure sound.
#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::vec::Vec;

/// How long a worker spins for the next job before it sleeps: longer than the gaps between
/// split layers within an inference (waking a sleeping thread costs tens of µs on a VM).
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The job's closure with its lifetime erased (see [`Pool::run`]).
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync + 'static));

// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for JobPtr {}

struct Shared {
    generation: AtomicU64,
    job: Mutex<Option<JobPtr>>,
    next: AtomicUsize,
    parts: AtomicUsize,
    active: AtomicUsize,
    quit: AtomicBool,
    panicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// Worker threads plus the calling thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool with `workers` threads besides the caller's.
    pub(crate) fn new(workers: usize) -> Pool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: Mutex::new(None),
            next: AtomicUsize::new(0),
            parts: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (0..workers)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || worker(&s))
            })
            .collect();
        Pool { shared, workers }
    }

    /// Threads that work on a job (workers plus the caller).
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(0)`, ..., `f(parts - 1)` on the workers and this thread; returns when all have
    /// finished. Panics if one of them panicked.
    pub(crate) fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        let s = &*self.shared;
        // SAFETY: only the lifetime is erased. Every worker decrements `active` after its last
        // use of the pointer, and this function does not return (or unwind) before `active`
        // is 0, so `f` outlives every use.
        let job = JobPtr(unsafe {
            core::mem::transmute::<
                *const (dyn Fn(usize) + Sync + '_),
                *const (dyn Fn(usize) + Sync + 'static),
            >(f)
        });
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(job);
        s.next.store(0, Ordering::Relaxed);
        s.parts.store(parts, Ordering::Relaxed);
        s.active.store(self.workers.len(), Ordering::Relaxed);
        {
            let _g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
            s.generation.fetch_add(1, Ordering::Release);
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| take_parts(s, f)));
        while s.active.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let worker_panicked = s.panicked.swap(false, Ordering::Relaxed);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if worker_panicked {
            panic!("a kiln worker thread panicked");
        }
    }
}

/// Takes part indices until none are left.
fn take_parts(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let parts = s.parts.load(Ordering::Relaxed);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= parts {
            break;
        }
        f(i);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let start = std::time::Instant::now();
        let mut spins = 0u32;
        loop {
            if s.quit.load(Ordering::Acquire) {
                return;
            }
            if s.generation.load(Ordering::Acquire) != seen {
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                let g = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation.load(Ordering::Acquire) == seen && !s.quit.load(Ordering::Acquire) {
                    drop(s.wake.wait(g).unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
        seen = s.generation.load(Ordering::Acquire);
        let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(JobPtr(f)) = job {
            // SAFETY: `Pool::run` keeps the closure alive until `active` reaches 0 below.
            let f = unsafe { &*f };
            if catch_unwind(AssertUnwindSafe(|| take_parts(s, f))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.active.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        {
            let _g = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_part_runs_once_per_job() {
        let pool = Pool::new(2);
        for parts in [0, 1, 2, 3, 7, 64] {
            for _ in 0..200 {
                let hits: [AtomicUsize; 64] = core::array::from_fn(|_| AtomicUsize::new(0));
                pool.run(parts, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                for (i, h) in hits.iter().enumerate() {
                    assert_eq!(
                        h.load(Ordering::Relaxed),
                        (i < parts) as usize,
                        "part {i}/{parts}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_panicking_part_reaches_the_caller_and_the_pool_still_works() {
        let pool = Pool::new(1);
        for bad in 0..4 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.run(4, &|i| assert_ne!(i, bad, "part {i} fails"));
            }));
            assert!(r.is_err(), "part {bad}'s panic was lost");
        }
        let n = AtomicUsize::new(0);
        pool.run(8, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }
}
