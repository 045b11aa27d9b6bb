//! The CPU backend's context: chosen instruction-set level and thread pool.
//!
//! Ops are methods on [`Cpu`] (destination-passing: callers own every output buffer), spread
//! over files by concern (`matmul/`, `ops/`). Work is split into a fixed number of contiguous
//! parts per op — a static partition — and each part's reduction order never depends on the
//! thread count, so 1 and N threads give bit-identical results.
//!
//! Threads: the data-parallel loops of matmul and the element-wise ops run on a [`Team`]
//! (the caller plus spinning workers: about a microsecond per dispatch while a forward
//! runs). The rayon pool remains for ops that use rayon's iterators (attention).

use crate::dispatch::{CpuExtras, CpuLevel};
use crate::team::Team;
use std::fmt;

/// Errors of the CPU backend.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("CPU level {0} is not supported by this machine")]
    UnsupportedLevel(CpuLevel),
    #[error("thread pool: {0}")]
    ThreadPool(String),
    #[error("{op}: tensor type {ty} is not supported")]
    UnsupportedType { op: &'static str, ty: weft::GgmlType },
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },
}

/// How to build a [`Cpu`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuConfig {
    /// Force an instruction-set level; `None` picks the best the machine has.
    pub level: Option<CpuLevel>,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
}

/// The CPU backend: a kernel level and a rayon pool with an explicit thread count.
pub struct Cpu {
    level: CpuLevel,
    extras: CpuExtras,
    threads: usize,
    pool: rayon::ThreadPool,
    team: Team,
    /// Huge-page memory for the weights this `Cpu` repacks.
    pub(crate) arena: crate::matmul::Arena,
    /// Whether `prepare_weight` may repack (default on).
    pub(crate) repack: bool,
}

impl Cpu {
    pub fn new(config: CpuConfig) -> Result<Self, CpuError> {
        let level = config.level.unwrap_or_else(CpuLevel::detect);
        if !level.is_supported() {
            return Err(CpuError::UnsupportedLevel(level));
        }
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("weft-cpu-{i}"))
            .build()
            .map_err(|e| CpuError::ThreadPool(e.to_string()))?;
        let team = Team::new(threads).map_err(|e| CpuError::ThreadPool(e.to_string()))?;
        Ok(Self {
            level,
            extras: CpuExtras::detect(),
            threads,
            pool,
            team,
            arena: Default::default(),
            repack: true,
        })
    }

    /// With `false`, weights are never repacked: every matmul reads the memory-mapped file
    /// as it is (faster load, pages shared with other processes mapping the same file, slower
    /// decode).
    pub fn with_repack(mut self, repack: bool) -> Self {
        self.repack = repack;
        self
    }

    pub fn level(&self) -> CpuLevel {
        self.level
    }

    pub fn extras(&self) -> CpuExtras {
        self.extras
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The rayon pool (for ops built on rayon's parallel iterators).
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Run `f(member, item)` for every item in `0..n_items` on the thread team and return
    /// when all are done. `member < self.threads()` names the running thread (index of its
    /// scratch memory). Items must be independent: which member runs one, and in what order
    /// items finish, is not fixed.
    pub(crate) fn par_items<F: Fn(usize, usize) + Sync>(&self, n_items: usize, f: F) {
        if self.threads <= 1 {
            return (0..n_items).for_each(|i| f(0, i));
        }
        self.team.run(n_items, &f)
    }

    /// Run `f(member, index, chunk)` for every `chunk_len`-long chunk of `data` (the last may
    /// be shorter) on the thread team, like [`Self::par_items`].
    pub(crate) fn par_chunks_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, usize, &mut [T]) + Sync,
    {
        let chunk_len = chunk_len.max(1);
        let len = data.len();
        let base = SendPtr(data.as_mut_ptr());
        self.par_items(len.div_ceil(chunk_len), |member, i| {
            let start = i * chunk_len;
            let n = chunk_len.min(len - start);
            // SAFETY: chunk i is in bounds (start < len) and disjoint from every other chunk;
            // each item runs exactly once, and `data` is borrowed mutably for the whole call.
            let c = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
            f(member, i, c)
        })
    }
}

/// A pointer to the elements of a slice that team members write disjoint parts of.
pub(crate) struct SendPtr<T>(*mut T);

impl<T> SendPtr<T> {
    pub(crate) fn new(p: *mut T) -> Self {
        Self(p)
    }

    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: it only hands the pointer to code that writes disjoint elements of `T: Send` data.
unsafe impl<T: Send> Sync for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SendPtr<T> {}

impl fmt::Debug for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpu").field("level", &self.level).field("threads", &self.threads).finish()
    }
}
