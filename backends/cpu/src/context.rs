//! The CPU backend's context: chosen instruction-set level and thread pool.
//!
//! Ops are methods on [`Cpu`] (destination-passing: callers own every output buffer), spread
//! over files by concern (`matmul/`, `ops/`). Work is split into a fixed number of contiguous
//! parts per op — a static partition — and each part's reduction order never depends on the
//! thread count, so 1 and N threads give bit-identical results.

use crate::dispatch::{CpuExtras, CpuLevel};
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
        Ok(Self { level, extras: CpuExtras::detect(), threads, pool })
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

    /// The rayon pool ops run in.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }
}

impl fmt::Debug for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cpu").field("level", &self.level).field("threads", &self.threads).finish()
    }
}
