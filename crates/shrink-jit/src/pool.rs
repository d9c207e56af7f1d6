//! The thread pool a [`crate::Kernel`] with layers split across threads owns: one worker per
//! extra thread, each with a slot the calling thread hands a part to.
//!
//! A split layer's parts take microseconds, so waking a sleeping thread (a futex wait and a
//! reschedule, tens of microseconds in a VM) would cost more than the part: a general-purpose
//! pool (rayon's `in_place_scope` was measured here) made a 2-thread ternary MLP 3× slower than
//! one thread. So a worker spins on its slot while work came recently ([`SPIN`]) and only then
//! parks, and the caller spins until its parts are done. One caller at a time uses the pool; a
//! second concurrent caller runs its parts itself, one after another (the same results).
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker keeps spinning after its last part before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// One part to run: a function of the kernel ABI and its arguments.
pub(crate) trait Part: Send + Sync {
    /// # Safety
    /// As the function's own contract: valid buffers, no other part writing what it touches.
    unsafe fn run(&self) -> i32;
}

const IDLE: u8 = 0;
const READY: u8 = 1;
const DONE: u8 = 2;

struct Slot {
    state: AtomicU8,
    status: AtomicI32,
    /// The part, valid while `state` is READY (written by the caller before it publishes).
    part: UnsafeCell<Option<*const dyn Part>>,
    sleeping: AtomicBool,
    stop: AtomicBool,
}

// SAFETY: `part` is written only by the caller holding the pool's lock while the slot is IDLE
// or DONE, and read only by the worker after it saw READY (release/acquire on `state`).
unsafe impl Sync for Slot {}
unsafe impl Send for Slot {}

pub(crate) struct Pool {
    slots: Vec<Arc<Slot>>,
    workers: Vec<JoinHandle<()>>,
    busy: Mutex<()>,
}

impl Pool {
    /// A pool of `extra` workers (the caller is the other thread).
    pub(crate) fn new(extra: usize) -> std::io::Result<Pool> {
        let mut slots = vec![];
        let mut workers = vec![];
        for i in 0..extra {
            let slot = Arc::new(Slot {
                state: AtomicU8::new(IDLE),
                status: AtomicI32::new(0),
                part: UnsafeCell::new(None),
                sleeping: AtomicBool::new(false),
                stop: AtomicBool::new(false),
            });
            let s = slot.clone();
            let handle = std::thread::Builder::new()
                .name(format!("shrink-kernel-{i}"))
                .spawn(move || work(&s));
            match handle {
                Ok(h) => {
                    slots.push(slot);
                    workers.push(h);
                }
                Err(e) => {
                    let pool = Pool {
                        slots,
                        workers,
                        busy: Mutex::new(()),
                    };
                    drop(pool);
                    return Err(e);
                }
            }
        }
        Ok(Pool {
            slots,
            workers,
            busy: Mutex::new(()),
        })
    }

    /// Threads a call runs on: the workers and the caller.
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `parts` at once (the caller takes the first) and returns the first nonzero status in
    /// part order, as running them one after another would.
    ///
    /// # Safety
    /// Every part must be safe to run concurrently with the others (see [`Part::run`]).
    pub(crate) unsafe fn run(&self, parts: &[&dyn Part]) -> i32 {
        let Some((first, rest)) = parts.split_first() else {
            return 0;
        };
        let guard = self.busy.try_lock();
        if guard.is_err() || rest.len() > self.slots.len() {
            // Another caller has the workers: these parts run here, in order.
            return parts
                .iter()
                .map(|p| unsafe { p.run() })
                .find(|&c| c != 0)
                .unwrap_or(0);
        }
        for (i, (slot, part)) in self.slots.iter().zip(rest).enumerate() {
            // SAFETY: the slot is IDLE (every earlier run waited for DONE and reset it) and this
            // caller holds the lock; the part outlives the wait below.
            unsafe {
                *slot.part.get() =
                    Some(std::mem::transmute::<&dyn Part, &'static dyn Part>(*part)
                        as *const dyn Part)
            };
            slot.state.store(READY, Ordering::SeqCst);
            if slot.sleeping.load(Ordering::SeqCst) {
                self.workers[i].thread().unpark();
            }
        }
        let own = unsafe { first.run() };
        let mut first_error = (own != 0).then_some(own);
        for slot in &self.slots[..rest.len()] {
            while slot.state.load(Ordering::Acquire) != DONE {
                std::hint::spin_loop();
            }
            let code = slot.status.load(Ordering::Relaxed);
            if first_error.is_none() && code != 0 {
                first_error = Some(code);
            }
            unsafe { *slot.part.get() = None };
            slot.state.store(IDLE, Ordering::Release);
        }
        first_error.unwrap_or(0)
    }
}

fn work(slot: &Slot) {
    let mut last = Instant::now();
    loop {
        if slot.stop.load(Ordering::Acquire) {
            return;
        }
        if slot.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY publishes a part that stays valid until this worker sets DONE.
            let part = unsafe { (*slot.part.get()).expect("a published part") };
            crate::clear_upper_vector_state();
            let code = unsafe { (*part).run() };
            slot.status.store(code, Ordering::Relaxed);
            slot.state.store(DONE, Ordering::Release);
            last = Instant::now();
            continue;
        }
        if last.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        // Park, unless work arrived between the check above and announcing the sleep.
        slot.sleeping.store(true, Ordering::SeqCst);
        if slot.state.load(Ordering::SeqCst) != READY && !slot.stop.load(Ordering::SeqCst) {
            std::thread::park();
        }
        slot.sleeping.store(false, Ordering::SeqCst);
        last = Instant::now();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.stop.store(true, Ordering::SeqCst);
        }
        for w in self.workers.drain(..) {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A part that counts its runs and returns a fixed status.
    struct Counting<'a>(&'a AtomicUsize, i32);

    impl Part for Counting<'_> {
        unsafe fn run(&self) -> i32 {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1
        }
    }

    /// Every part runs once per call, also after the workers parked (a pause longer than
    /// [`SPIN`]), and the status is the first nonzero one in part order.
    #[test]
    fn parts_run_once_and_report_the_first_failure_in_order() {
        let pool = Pool::new(3).unwrap();
        assert_eq!(pool.threads(), 4);
        let counts: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
        for (round, statuses) in [[0, 0, 0, 0], [0, 5, 0, 7], [3, 0, 9, 0]]
            .iter()
            .enumerate()
        {
            if round == 1 {
                std::thread::sleep(SPIN * 10);
            }
            let parts: Vec<Counting> = counts
                .iter()
                .zip(statuses)
                .map(|(c, &s)| Counting(c, s))
                .collect();
            let refs: Vec<&dyn Part> = parts.iter().map(|p| p as &dyn Part).collect();
            let want = statuses.iter().copied().find(|&s| s != 0).unwrap_or(0);
            assert_eq!(unsafe { pool.run(&refs) }, want, "round {round}");
        }
        assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 3));
    }
}
