//! A fixed team of worker threads for the ops' data-parallel loops.
//!
//! Why not rayon's `install` per op: decode runs about 300 ops per token, and each one that
//! enters a rayon pool from outside blocks the caller on a latch, wakes a sleeping worker
//! through the kernel and is woken again at the end: tens of microseconds per op, which was
//! most of a token's time at 2 threads. Here the calling thread is member 0 and works too, and
//! the other members spin for a short while after each job, so the next op of the same
//! forward starts within a microsecond; after [`SPIN`] without work they sleep on a condvar,
//! so an idle process burns no CPU.
//!
//! A job is `n_items` independent items, claimed one at a time from an atomic counter. Which
//! member runs an item never changes what the item computes, so results do not depend on the
//! thread count or on timing.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps. The ops of one forward follow each other
/// within microseconds; between tokens (sampling) or requests the workers go to sleep.
const SPIN: Duration = Duration::from_micros(500);

/// [`Shared::state`]: set once the dispatcher stops admitting workers.
const CLOSED: u64 = 1 << 31;
/// [`Shared::state`]: the count of workers inside the job.
const ACTIVE: u64 = CLOSED - 1;

/// A job's body: `f(member, item)`.
type JobFn = dyn Fn(usize, usize) + Sync;

/// The job slot's value before the first job.
const NOOP: &JobFn = &|_, _| {};

/// The current job, as workers read it.
#[derive(Clone, Copy)]
struct Job {
    /// Borrowed from the dispatching call's stack frame, which outlives every use (the
    /// dispatcher waits for all workers to finish before it returns).
    f: *const JobFn,
    n_items: usize,
}

struct Shared {
    /// Bumped once per job and at shutdown; workers wait for it to change.
    epoch: AtomicU64,
    /// Written only by the dispatcher while no worker reads it (between jobs).
    job: UnsafeCell<Job>,
    /// The next unclaimed item of the current job.
    next: AtomicUsize,
    /// The job's admission word: the epoch's low 32 bits, [`CLOSED`], and the number of
    /// workers inside the job ([`ACTIVE`] bits). A worker joins only an open job of the epoch
    /// it saw; the dispatcher closes the job once it has run out of items and waits only for
    /// the workers inside, so a worker the OS has not scheduled (a loaded machine) never
    /// delays a job it did not join.
    state: AtomicU64,
    /// Workers asleep (or about to sleep) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    quit: AtomicBool,
    /// The first panic a worker caught in the current job, re-raised by the dispatcher.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `job` is written by the dispatcher only while no worker is inside a job (the
// previous one is closed and its active count was 0) and before the release store of the
// state that admits workers, which read it only after joining (acquire); the closure behind
// the pointer is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; nothing in `Shared` is tied to a thread.
unsafe impl Send for Shared {}

/// The worker threads plus the calling thread (member 0).
pub(crate) struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held while a job runs. A second dispatcher (another thread, or a job that dispatches
    /// again from inside) runs its items on its own thread instead.
    busy: Mutex<()>,
}

impl Team {
    /// A team of `size` members: the caller and `size - 1` spawned workers.
    pub(crate) fn new(size: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(Job { f: NOOP, n_items: 0 }),
            next: AtomicUsize::new(0),
            state: AtomicU64::new(CLOSED),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            quit: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut team = Self { shared, workers: Vec::new(), busy: Mutex::new(()) };
        for member in 1..size.max(1) {
            let sh = Arc::clone(&team.shared);
            let h = std::thread::Builder::new()
                .name(format!("weft-cpu-{member}"))
                .spawn(move || worker(&sh, member))?;
            team.workers.push(h);
        }
        Ok(team)
    }

    /// Members, the caller included.
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Run `f(member, item)` for every item in `0..n_items` and return when all are done.
    /// `member < self.size()` names the thread running the item (for per-thread scratch);
    /// every item runs exactly once. A panic in any item is re-raised here.
    pub(crate) fn run(&self, n_items: usize, f: &(dyn Fn(usize, usize) + Sync + '_)) {
        if self.workers.is_empty() || n_items <= 1 {
            return (0..n_items).for_each(|i| f(0, i));
        }
        let _busy = match self.busy.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return (0..n_items).for_each(|i| f(0, i)),
        };
        let sh = &*self.shared;
        // SAFETY: only the lifetime is erased; workers use the pointer only inside the job,
        // and this call waits for every worker inside before it returns (or unwinds).
        let job = Job {
            f: unsafe {
                std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const JobFn>(f)
            },
            n_items,
        };
        // SAFETY: no worker is inside a job (the previous dispatch closed its job and waited
        // for the active count to drop to 0), and workers read `job` only after joining.
        unsafe { *sh.job.get() = job };
        sh.next.store(0, Ordering::Relaxed);
        let epoch = sh.epoch.load(Ordering::Relaxed).wrapping_add(1);
        sh.state.store((epoch & 0xFFFF_FFFF) << 32, Ordering::Release);
        sh.epoch.store(epoch, Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        let mine = panic::catch_unwind(AssertUnwindSafe(|| claim(sh, f, 0, n_items)));
        // No items left: admit nobody else, and wait for the workers inside.
        let mut st = sh.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        while st & ACTIVE != 0 {
            spins = spins.saturating_add(1);
            if spins < 1 << 14 {
                std::hint::spin_loop();
            } else {
                // A worker inside was preempted (a loaded machine): stop competing with it.
                std::thread::yield_now();
            }
            st = sh.state.load(Ordering::Acquire);
        }
        let theirs = sh.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Err(p) = mine {
            panic::resume_unwind(p);
        }
        if let Some(p) = theirs {
            panic::resume_unwind(p);
        }
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.quit.store(true, Ordering::SeqCst);
        sh.epoch.fetch_add(1, Ordering::SeqCst);
        {
            let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Claim and run items until none are left.
fn claim(sh: &Shared, f: &(dyn Fn(usize, usize) + Sync + '_), member: usize, n_items: usize) {
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= n_items {
            return;
        }
        f(member, i);
    }
}

/// A worker's loop: wait for a new epoch (spinning, then sleeping), run the job, report.
fn worker(sh: &Shared, member: usize) {
    let mut seen = 0u64;
    loop {
        seen = wait_epoch(sh, seen);
        if sh.quit.load(Ordering::SeqCst) {
            return;
        }
        if !join(sh, seen) {
            continue;
        }
        // SAFETY: we are inside the job: the dispatcher wrote `job` before admitting workers
        // (we acquired that state when joining) and keeps it, and the closure, alive until
        // we leave.
        let job = unsafe { *sh.job.get() };
        // SAFETY: as above.
        let f = unsafe { &*job.f };
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| claim(sh, f, member, job.n_items)))
        {
            sh.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(p);
        }
        sh.state.fetch_sub(1, Ordering::Release);
    }
}

/// Enter the job of `epoch` if it is still open: count ourselves in and return true.
fn join(sh: &Shared, epoch: u64) -> bool {
    let tag = (epoch & 0xFFFF_FFFF) << 32;
    let mut st = sh.state.load(Ordering::Acquire);
    loop {
        if st & !ACTIVE & !CLOSED != tag || st & CLOSED != 0 {
            return false;
        }
        match sh.state.compare_exchange_weak(st, st + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => st = now,
        }
    }
}

/// Wait until the epoch differs from `seen` and return it: spin for [`SPIN`], then sleep.
fn wait_epoch(sh: &Shared, seen: u64) -> u64 {
    let t0 = Instant::now();
    let mut spins = 0u32;
    loop {
        let e = sh.epoch.load(Ordering::Acquire);
        if e != seen {
            return e;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && t0.elapsed() > SPIN {
            break;
        }
        std::hint::spin_loop();
    }
    // Announce the sleeper before the last check, so a dispatcher either sees it (and
    // notifies under the lock) or we see its new epoch: no lost wake-up.
    sh.sleepers.fetch_add(1, Ordering::SeqCst);
    let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
    let e = loop {
        let e = sh.epoch.load(Ordering::SeqCst);
        if e != seen {
            break e;
        }
        g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
    };
    drop(g);
    sh.sleepers.fetch_sub(1, Ordering::SeqCst);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_item_runs_once() {
        for size in [1, 2, 3] {
            let team = Team::new(size).unwrap();
            for n in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                team.run(n, &|m, i| {
                    assert!(m < team.size());
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "size {size} n {n}");
            }
        }
    }

    #[test]
    fn nested_dispatch_runs_serially() {
        let team = Team::new(2).unwrap();
        let total = AtomicU32::new(0);
        team.run(4, &|_, _| {
            team.run(3, &|_, _| {
                total.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 12);
    }

    #[test]
    fn worker_panic_reaches_the_caller_and_team_survives() {
        let team = Team::new(2).unwrap();
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            team.run(64, &|_, i| assert!(i != 40, "item 40"));
        }));
        assert!(r.is_err());
        let n = AtomicU32::new(0);
        team.run(10, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let team = Team::new(2).unwrap();
        std::thread::sleep(SPIN * 4);
        let n = AtomicU32::new(0);
        team.run(50, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 50);
    }
}
