//! Memory for packed weights: anonymous mappings advised for transparent huge pages.
//!
//! Why: decode streams every weight byte once per token. With 4 KiB pages that stream takes a
//! TLB miss every 64 cache lines and the hardware prefetchers stop at every page boundary;
//! with 2 MiB pages a single-core read ran about 10 % faster on the Sapphire Rapids machines
//! (13.1 -> 14.4 GB/s, docs/PERFORMANCE.md). A huge page needs 2 MiB of aligned, contiguous
//! memory, so small tensors share 32 MiB chunks, each 2 MiB aligned, and a tensor larger than
//! a chunk gets a mapping of its own. Where the OS has no huge pages the advice is ignored
//! and this is plain anonymous memory; where mapping fails the caller falls back to the heap.
//!
//! Memory is zeroed by the OS and never freed before the last slice of a chunk is dropped.

use std::sync::{Arc, Mutex};

/// Bytes of a huge page (x86-64 and aarch64 with 4 KiB base pages).
const HUGE: usize = 2 << 20;
/// Bytes of a shared chunk.
const CHUNK: usize = 32 << 20;

/// One anonymous mapping; `base` is its first 2 MiB aligned byte.
struct Chunk {
    /// Owns the mapping (unmapped on drop); accessed through `base` only.
    _map: memmap2::MmapMut,
    base: *mut u8,
    len: usize,
}

// SAFETY: `base` points into `_map`, which lives as long as the chunk. Writes happen only
// through `Arena::alloc`'s `fill`, to a range handed out once (disjoint from every other
// slice); afterwards the bytes are only read.
unsafe impl Send for Chunk {}
// SAFETY: as above.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(len: usize) -> std::io::Result<Chunk> {
        let mut map = memmap2::MmapMut::map_anon(len + HUGE)?;
        let ptr = map.as_mut_ptr();
        let pad = (HUGE - ptr as usize % HUGE) % HUGE;
        #[cfg(target_os = "linux")]
        {
            // Advice, not a requirement: without THP the memory is simply 4 KiB pages.
            let _ = map.advise_range(memmap2::Advice::HugePage, pad, len);
        }
        // SAFETY: pad < HUGE, so base .. base + len lies inside the len + HUGE mapping.
        let base = unsafe { ptr.add(pad) };
        Ok(Chunk { _map: map, base, len })
    }
}

/// Bytes handed out by an [`Arena`]; they live as long as this value.
pub(crate) struct ArenaSlice {
    chunk: Arc<Chunk>,
    off: usize,
    len: usize,
}

impl ArenaSlice {
    pub(crate) fn bytes(&self) -> &[u8] {
        debug_assert!(self.off + self.len <= self.chunk.len);
        // SAFETY: off + len <= chunk.len (checked when handed out); the chunk's mapping
        // lives as long as the Arc; nobody writes the range after `fill` returned.
        unsafe { std::slice::from_raw_parts(self.chunk.base.add(self.off), self.len) }
    }
}

/// Hands out 64-byte aligned ranges of huge-page-advised chunks.
#[derive(Default)]
pub(crate) struct Arena {
    /// The chunk being filled and the bytes used of it.
    current: Mutex<Option<(Arc<Chunk>, usize)>>,
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Arena")
    }
}

impl Arena {
    /// `len` zeroed bytes, written once by `fill`.
    pub(crate) fn alloc(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> std::io::Result<ArenaSlice> {
        let (chunk, off) = if len > CHUNK / 2 {
            (Arc::new(Chunk::new(len.next_multiple_of(4096))?), 0)
        } else {
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let fits = cur.as_ref().is_some_and(|(_, used)| used + len <= CHUNK);
            if !fits {
                *cur = Some((Arc::new(Chunk::new(CHUNK)?), 0));
            }
            let (chunk, used) = cur.as_mut().expect("set above");
            let off = *used;
            *used = (off + len).next_multiple_of(64);
            (Arc::clone(chunk), off)
        };
        assert!(off + len <= chunk.len);
        // SAFETY: off..off + len is inside the chunk and was handed out to nobody else (the
        // used mark moved past it under the lock), so this is the only reference to it.
        fill(unsafe { std::slice::from_raw_parts_mut(chunk.base.add(off), len) });
        Ok(ArenaSlice { chunk, off, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_zeroed_disjoint_aligned_and_keep_their_bytes() {
        let arena = Arena::default();
        let mut slices = Vec::new();
        for (i, len) in [100, 5000, 64, CHUNK / 2, 3 * CHUNK / 4, 1].into_iter().enumerate() {
            let s = arena
                .alloc(len, |b| {
                    assert!(b.iter().all(|&x| x == 0));
                    b.fill(i as u8 + 1);
                })
                .unwrap();
            assert_eq!(s.bytes().as_ptr() as usize % 64, 0);
            slices.push((i as u8 + 1, s));
        }
        for (v, s) in &slices {
            assert!(s.bytes().iter().all(|x| x == v));
        }
    }
}
