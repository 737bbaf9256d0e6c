//! A small persistent thread pool: `parallel_for(n_tasks, f)` runs `f(0) .. f(n_tasks-1)` on
//! `num_threads()` threads (the calling thread is one of them) and returns when all are done.
//!
//! Why our own pool: the kernels (GEMM, elementwise) call it thousands of times per training
//! step, so starting threads per call (`std::thread::scope`) would cost more than the work of
//! the small ops. Workers are started once, lazily, and park on a condvar between jobs after a
//! short spin (so an idle pool does not burn the other core).
//!
//! Protocol (one job at a time, guarded by the `submit` lock):
//! 1. The caller, holding `submit`, resets `next_task`, sets `pending` = number of workers that
//!    take part, then under the `state` mutex stores the job and bumps `epoch`, and wakes workers.
//! 2. Every worker (whether or not it takes part) sees the new epoch, reads the job under the
//!    mutex, and if it takes part claims task indices with `next_task.fetch_add` until they run
//!    out, then decrements `pending`.
//! 3. The caller claims tasks too, then waits until `pending` is 0. Only then does it return, so
//!    the borrowed closure outlives every use of it, and the next job cannot start while a worker
//!    is still inside this one (so no worker can skip an epoch or mix two jobs).
//!
//! Memory ordering:
//! - Job publication goes through the `state` mutex (store under lock, read under lock), which
//!   orders the caller's earlier writes (inputs, `next_task`/`pending` resets) before the
//!   workers' reads. The `epoch` atomic is only a hint that lets a spinning worker notice the
//!   job without taking the lock; it never carries data by itself.
//! - Task results: a worker's writes in `f(i)` happen before its `pending.fetch_sub(Release)`;
//!   the caller's `pending.load(Acquire)` that observes 0 synchronises with all of those, so the
//!   caller sees every result when `parallel_for` returns.
//! - `next_task` is `Relaxed`: it only hands out distinct indices (atomic RMW guarantees each
//!   index once); it does not order data.
//!
//! Nesting and concurrency: a `parallel_for` called from inside a task (on a worker or on the
//! caller while it runs tasks) runs its tasks serially on the current thread, and so does one
//! called from another thread while the pool is busy (`submit` is only try-locked): the cores
//! are taken anyway, and no call can ever wait for the pool (no deadlock, even from threads a
//! task spawns).
//! Work split is deterministic: task `i` always receives index `i`; which thread runs it does
//! not matter for callers that write disjoint outputs per task.
//!
//! Panics in tasks are caught, the job is finished, and the panic is re-raised in the caller.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a waiting thread spins before it parks on a condvar: long enough to catch
/// back-to-back kernel calls without a futex round trip (~10-50 us), short enough that an idle
/// pool gives the core back quickly. Measured in time, not iterations, because the cost of
/// `spin_loop` (x86 `pause`) differs ~10x between CPU generations.
const SPIN_TIME: Duration = Duration::from_micros(50);

/// Spins until `done()` or SPIN_TIME passes; returns whether `done()` became true.
fn spin_until(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    loop {
        // Check the clock only every 64 probes: reading it costs more than a probe.
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN_TIME {
            return false;
        }
    }
}

/// 0 = not yet decided (read `ILREC_THREADS` / available_parallelism on first use).
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// True while this thread runs pool tasks (always, on workers): nested calls go serial.
    static IN_POOL_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Threads used by `parallel_for` (including the caller). Default: env `ILREC_THREADS` if it is
/// a positive integer, else `std::thread::available_parallelism()`.
pub fn num_threads() -> usize {
    let n = NUM_THREADS.load(Ordering::Relaxed);
    if n != 0 {
        return n;
    }
    let from_env = std::env::var("ILREC_THREADS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1);
    let n = from_env.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // If another thread decided first (or set_num_threads ran), keep its value.
    match NUM_THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => n,
        Err(existing) => existing,
    }
}

/// Sets the thread count for later `parallel_for` calls (benchmarks `--threads`, tests).
/// Values below 1 are treated as 1.
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n.max(1), Ordering::Relaxed);
}

/// Runs `f(i)` for every `i` in `0..n_tasks`, on the pool plus the calling thread, and returns
/// when all calls have finished. Nested calls (from inside a task) run serially.
pub fn parallel_for(n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let threads = num_threads().min(n_tasks);
    if threads <= 1 || IN_POOL_TASK.with(|t| t.get()) {
        (0..n_tasks).for_each(f);
        return;
    }
    let pool = pool();
    let _one_job_at_a_time = match pool.submit.try_lock() {
        Ok(guard) => guard,
        // A task panicked while the guard was held; the pool itself is consistent.
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            (0..n_tasks).for_each(f);
            return;
        }
    };
    pool.run(threads - 1, n_tasks, f);
}

/// The job as workers see it. The closure pointer has its lifetime erased; `Pool::run` does not
/// return before every worker is done with it (see the module docs).
#[derive(Clone, Copy)]
struct Job {
    func: *const (dyn Fn(usize) + Sync + 'static),
    n_tasks: usize,
    /// Workers with index < `workers` take part; the others only note the epoch.
    workers: usize,
}

// SAFETY: the pointee is `Sync` and is only used while `Pool::run` keeps it alive.
unsafe impl Send for Job {}

struct State {
    epoch: u64,
    job: Option<Job>,
}

struct Pool {
    /// Serialises `run` calls from different (non-pool) threads: one job at a time.
    submit: Mutex<()>,
    state: Mutex<State>,
    /// Workers wait here for a new epoch.
    job_ready: Condvar,
    /// The caller waits here for `pending == 0`.
    job_done: Condvar,
    /// Mirror of `state.epoch` so workers can spin without the lock (a hint only).
    epoch: AtomicU64,
    next_task: AtomicUsize,
    /// Workers of the current job that have not finished it yet.
    pending: AtomicUsize,
    /// Set if any task of the current job panicked on a worker.
    worker_panicked: AtomicBool,
    /// Number of worker threads started so far (only grows; guarded by `submit`).
    started: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        submit: Mutex::new(()),
        state: Mutex::new(State {
            epoch: 0,
            job: None,
        }),
        job_ready: Condvar::new(),
        job_done: Condvar::new(),
        epoch: AtomicU64::new(0),
        next_task: AtomicUsize::new(0),
        pending: AtomicUsize::new(0),
        worker_panicked: AtomicBool::new(false),
        started: AtomicUsize::new(0),
    })
}

/// Locks ignoring poisoning: our critical sections only copy plain values and cannot leave the
/// state half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    /// Runs one job. The caller holds `submit`.
    fn run(&'static self, workers: usize, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        self.start_workers(workers);

        // SAFETY (lifetime erasure): we wait for `pending == 0` below before returning, and
        // workers drop the pointer before decrementing `pending`.
        let func: *const (dyn Fn(usize) + Sync + 'static) =
            unsafe { std::mem::transmute(f as *const (dyn Fn(usize) + Sync)) };
        self.next_task.store(0, Ordering::Relaxed);
        self.pending.store(workers, Ordering::Relaxed);
        self.worker_panicked.store(false, Ordering::Relaxed);
        {
            let mut st = lock(&self.state);
            st.epoch += 1;
            st.job = Some(Job {
                func,
                n_tasks,
                workers,
            });
            self.epoch.store(st.epoch, Ordering::Release);
        }
        self.job_ready.notify_all();

        IN_POOL_TASK.with(|t| t.set(true));
        let caller_result = catch_unwind(AssertUnwindSafe(|| self.claim_tasks(n_tasks, f)));
        IN_POOL_TASK.with(|t| t.set(false));
        self.wait_workers_done();

        if let Err(payload) = caller_result {
            resume_unwind(payload);
        }
        if self.worker_panicked.load(Ordering::Relaxed) {
            panic!("parallel_for: a task panicked on a pool worker (see its message above)");
        }
    }

    fn claim_tasks(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        loop {
            let i = self.next_task.fetch_add(1, Ordering::Relaxed);
            if i >= n_tasks {
                return;
            }
            f(i);
        }
    }

    fn wait_workers_done(&self) {
        if spin_until(|| self.pending.load(Ordering::Acquire) == 0) {
            return;
        }
        let mut st = lock(&self.state);
        while self.pending.load(Ordering::Acquire) != 0 {
            st = self.job_done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Starts workers until at least `workers` exist. Called with `submit` held.
    fn start_workers(&'static self, workers: usize) {
        while self.started.load(Ordering::Relaxed) < workers {
            let index = self.started.load(Ordering::Relaxed);
            // A worker must not act on a job published before it existed: it starts from the
            // current epoch (read under the lock).
            let seen_epoch = lock(&self.state).epoch;
            std::thread::Builder::new()
                .name(format!("ilrec-pool-{index}"))
                .spawn(move || self.worker_loop(index, seen_epoch))
                .expect("parallel_for: the OS refused to start a pool thread");
            self.started.store(index + 1, Ordering::Relaxed);
        }
    }

    fn worker_loop(&self, index: usize, mut seen_epoch: u64) {
        IN_POOL_TASK.with(|t| t.set(true));
        loop {
            let job = self.wait_next_job(&mut seen_epoch);
            if index >= job.workers {
                continue;
            }
            // SAFETY: the caller keeps the closure alive until we decrement `pending`.
            let f = unsafe { &*job.func };
            if catch_unwind(AssertUnwindSafe(|| self.claim_tasks(job.n_tasks, f))).is_err() {
                self.worker_panicked.store(true, Ordering::Relaxed);
            }
            if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                // Take the lock so the notify cannot slip between the caller's check and wait.
                let _st = lock(&self.state);
                self.job_done.notify_all();
            }
        }
    }

    /// Spins briefly on the epoch hint, then parks; returns the job of the next epoch.
    fn wait_next_job(&self, seen_epoch: &mut u64) -> Job {
        spin_until(|| self.epoch.load(Ordering::Acquire) != *seen_epoch);
        let mut st = lock(&self.state);
        while st.epoch == *seen_epoch {
            st = self.job_ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        *seen_epoch = st.epoch;
        st.job.expect("pool: epoch advanced without a job")
    }
}
