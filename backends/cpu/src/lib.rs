//! CPU backend for weft: SIMD kernels chosen at run time by CPU feature detection, with a
//! portable scalar path, and a thread team (plus a rayon pool for rayon-based ops) whose work
//! items are computed in a fixed order, so results do not depend on the thread count.

mod backend_impl;
pub mod context;
pub mod dispatch;
pub mod matmul;
pub mod ops;
mod team;

pub use backend_impl::KvBuf;
pub use context::{Cpu, CpuConfig, CpuError};
pub use dispatch::{CpuExtras, CpuLevel};
pub use matmul::{CpuWeight, MatmulScratch, PackedWeight, WeightRef};
