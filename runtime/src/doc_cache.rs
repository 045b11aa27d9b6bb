//! The document KV cache: the K/V of an encoded piece, keyed by its content, kept in memory
//! (LRU under a byte budget) and optionally on disk, so a document is encoded once and
//! re-used by later requests.
//!
//! **Key.** A piece's K/V depend on the model, the sink it saw (tokens and positions), its
//! own tokens, their positions and its BOS; nothing else (pieces never see each other). The
//! key is a SHA-256 of exactly those. The sink is cached too, under a key of the model and
//! its own cells, so a hit encodes only the question. With `left` positions (and PCW, APE) a piece's
//! positions do not depend on the other pieces, so a cached document is re-used in any set.
//! With `even` or `right` they depend on the set's longest piece, and so does the key. We key
//! on positions rather than re-rotating cached keys because re-rotation is exact only for a
//! uniform shift of a piece that sees no sink: `even` stretches positions (relative
//! distances inside the piece change, and with them every layer's hidden states), and with a
//! sink any shift changes the distances to the sink. A re-rotated entry would then differ
//! from recomputation by more than float error.
//!
//! The KV cache's element type ([`KvType`], f16 or f32) is part of the key: an f16 entry is
//! never offered to an f32 cache or the reverse (it would be neither bit-exact nor the same
//! size).
//!
//! **Disk format** (version 2, little-endian): magic `WEFTKV\0\x01`, u32 version, the 32-byte
//! key, u32 n_layer, u32 n_cells, u32 row_len, u32 ggml type id of the elements (1 = F16,
//! 0 = F32), then kv_type [2, n_layer, n_cells, row_len] (all K layers, then all V layers),
//! then the SHA-256 of everything before it. Files are written to a temporary name, fsynced
//! and renamed (atomic). A file with the wrong size, version, type, header or checksum
//! (version 1 files included: they had no type field) is reported in
//! [`CacheStats::damaged`], deleted and recomputed, never used.

use crate::backend::Backend;
use crate::gguf::GgufFile;
use crate::kv_cache::KvCache;
use crate::layout::Layout;
use crate::{GgmlType, KvType};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"WEFTKV\0\x01";
const VERSION: u32 = 2;
/// magic + version + key + n_layer + n_cells + row_len + type id
const HEADER_LEN: usize = 8 + 4 + 32 + 16;

/// Errors of the document cache.
#[derive(Debug, thiserror::Error)]
pub enum DocCacheError {
    #[error("document cache directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("document cache: backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// The content key of one cached piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DocKey(pub [u8; 32]);

impl DocKey {
    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Counters of a cache's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub hits_memory: usize,
    pub hits_disk: usize,
    pub misses: usize,
    pub stores: usize,
    pub evictions: usize,
    /// Disk files found damaged (wrong size, header or checksum): deleted and recomputed.
    pub damaged: usize,
    /// Bytes held in memory now.
    pub bytes: usize,
    pub entries: usize,
}

struct Entry {
    /// kv_type [2, n_layer, n_cells, row_len], little-endian bytes
    kv: Vec<u8>,
    kv_type: KvType,
    last_used: u64,
}

/// Cached piece K/V by content key: an LRU in memory and an optional directory on disk.
pub struct DocCache {
    model_id: String,
    budget: usize,
    mem: HashMap<DocKey, Entry>,
    /// Bytes of K/V held in `mem` (kept with every insert and removal, so evicting many
    /// entries costs no re-summing).
    used: usize,
    clock: u64,
    dir: Option<PathBuf>,
    stats: CacheStats,
}

impl DocCache {
    /// An in-memory cache for the model identified by `model_id` (see
    /// [`DocCache::model_fingerprint`]), holding at most `budget_bytes` of K/V.
    pub fn new(model_id: impl Into<String>, budget_bytes: usize) -> Self {
        DocCache {
            model_id: model_id.into(),
            budget: budget_bytes,
            mem: HashMap::new(),
            used: 0,
            clock: 0,
            dir: None,
            stats: CacheStats::default(),
        }
    }

    /// Also keep entries as files in `dir` (created if missing).
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self, DocCacheError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|source| DocCacheError::Io { path: dir.clone(), source })?;
        self.dir = Some(dir);
        Ok(self)
    }

    /// A cheap identity of a model file: SHA-256 of its header (metadata and tensor
    /// table), its size, and 64 KiB samples of the tensor data at 16 evenly spaced offsets,
    /// so files that differ in configuration, types or weights get different caches.
    pub fn model_fingerprint(file: &GgufFile) -> String {
        let bytes = file.bytes();
        let data0 = (file.data_offset() as usize).min(bytes.len());
        let mut h = Sha256::new();
        h.update(&bytes[..data0]);
        h.update((bytes.len() as u64).to_le_bytes());
        let data = &bytes[data0..];
        const SAMPLE: usize = 64 << 10;
        for i in 0..16 {
            let at = data.len().saturating_sub(SAMPLE) * i / 15;
            h.update(&data[at..(at + SAMPLE).min(data.len())]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { bytes: self.used(), entries: self.mem.len(), ..self.stats }
    }

    fn used(&self) -> usize {
        self.used
    }

    /// The key of piece `p` of `layout` in a KV cache of `kv_type`: model, KV type, sink
    /// cells and the piece's cells (token, position, BOS flag of each).
    pub fn key(&self, layout: &Layout, p: usize, kv_type: KvType) -> DocKey {
        self.hash(layout, Some(p), kv_type)
    }

    /// The key of the sink of `layout` alone (`None` without a sink): the sink's K/V depend
    /// only on the model, the KV type and its own cells.
    pub fn sink_key(&self, layout: &Layout, kv_type: KvType) -> Option<DocKey> {
        (!layout.sink().is_empty()).then(|| self.hash(layout, None, kv_type))
    }

    fn hash(&self, layout: &Layout, piece: Option<usize>, kv_type: KvType) -> DocKey {
        let mut h = Sha256::new();
        h.update(b"weft document kv v2\0");
        h.update((self.model_id.len() as u64).to_le_bytes());
        h.update(self.model_id.as_bytes());
        h.update(kv_type.ggml_type().id().to_le_bytes());
        let parts = [(b's', Some(layout.sink())), (b'p', piece.map(|p| layout.piece(p)))];
        for (tag, cells) in parts.into_iter().filter_map(|(t, c)| c.map(|c| (t, c))) {
            h.update([tag]);
            h.update((cells.len() as u64).to_le_bytes());
            for c in &layout.cells()[cells] {
                h.update(c.token.to_le_bytes());
                h.update(c.pos.to_le_bytes());
                h.update([u8::from(c.bos)]);
            }
        }
        DocKey(h.finalize().into())
    }

    /// Fills `cells` of `kv` with the entry of `key` when there is one (memory, then
    /// disk). Returns whether it did.
    pub fn load<B: Backend>(
        &mut self,
        key: &DocKey,
        backend: &B,
        kv: &mut KvCache<B>,
        cells: Range<usize>,
    ) -> Result<bool, DocCacheError> {
        self.clock += 1;
        let ty = kv.kv_type();
        let want = kv.cells_bytes(cells.len());
        if let Some(e) = self.mem.get_mut(key).filter(|e| e.kv.len() == want && e.kv_type == ty) {
            e.last_used = self.clock;
            kv.write_cells(backend, cells, &e.kv).map_err(backend_err)?;
            self.stats.hits_memory += 1;
            return Ok(true);
        }
        let from_disk = match &self.dir {
            Some(dir) => {
                let shape = Shape {
                    n_layer: kv.n_layer(),
                    n_cells: cells.len(),
                    row_len: kv.row_len(),
                    ty,
                };
                self.read_file(dir.clone(), key, shape)
            }
            None => None,
        };
        match from_disk {
            Some(data) => {
                kv.write_cells(backend, cells, &data).map_err(backend_err)?;
                self.stats.hits_disk += 1;
                self.insert(*key, data, ty);
                Ok(true)
            }
            None => {
                self.stats.misses += 1;
                Ok(false)
            }
        }
    }

    /// Keeps `cells` of `kv` under `key` (memory, and disk when a directory is set).
    pub fn store<B: Backend>(
        &mut self,
        key: DocKey,
        backend: &B,
        kv: &KvCache<B>,
        cells: Range<usize>,
    ) -> Result<(), DocCacheError> {
        let ty = kv.kv_type();
        let shape =
            Shape { n_layer: kv.n_layer(), n_cells: cells.len(), row_len: kv.row_len(), ty };
        // kv_type [2, n_layer, n_cells, row_len], little-endian bytes
        let mut data = vec![0u8; kv.cells_bytes(cells.len())];
        kv.read_cells(backend, cells, &mut data).map_err(backend_err)?;
        if let Some(dir) = &self.dir {
            write_file(dir, &key, shape, &data)?;
        }
        self.stats.stores += 1;
        self.insert(key, data, ty);
        Ok(())
    }

    /// Inserts an entry, evicting least recently used ones beyond the budget. An entry
    /// larger than the whole budget is not kept in memory.
    fn insert(&mut self, key: DocKey, kv: Vec<u8>, kv_type: KvType) {
        self.clock += 1;
        if kv.len() > self.budget {
            return;
        }
        self.used += kv.len();
        if let Some(prev) = self.mem.insert(key, Entry { kv, kv_type, last_used: self.clock }) {
            self.used -= prev.kv.len();
        }
        while self.used > self.budget {
            let Some(old) = self.mem.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = self.mem.remove(&old) {
                self.used -= e.kv.len();
            }
            self.stats.evictions += 1;
        }
    }

    fn path(dir: &Path, key: &DocKey) -> PathBuf {
        dir.join(format!("{}.weftkv", key.hex()))
    }

    /// Reads and verifies the file of `key`; a damaged file is counted, deleted and
    /// ignored. The expected size is known before anything is read, so a damaged header
    /// cannot make us allocate more than the entry needs.
    fn read_file(&mut self, dir: PathBuf, key: &DocKey, shape: Shape) -> Option<Vec<u8>> {
        let path = Self::path(&dir, key);
        let expect = HEADER_LEN + shape.payload_bytes() + 32;
        let size = std::fs::metadata(&path).ok()?.len();
        let ok = (size == expect as u64)
            .then(|| std::fs::read(&path).ok())
            .flatten()
            .and_then(|b| parse(&b, key, shape));
        match ok {
            Some(data) => Some(data),
            None => {
                self.stats.damaged += 1;
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }
}

/// The shape and element type of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    n_layer: usize,
    n_cells: usize,
    row_len: usize,
    ty: KvType,
}

impl Shape {
    /// Bytes of kv_type [2, n_layer, n_cells, row_len].
    fn payload_bytes(&self) -> usize {
        2 * self.n_layer * self.n_cells * self.row_len * self.ty.type_size()
    }
}

/// Checks a file's bytes and returns its K/V (kv_type [2, n_layer, n_cells, row_len],
/// little-endian bytes).
fn parse(b: &[u8], key: &DocKey, shape: Shape) -> Option<Vec<u8>> {
    if b.len() < HEADER_LEN + 32 {
        return None;
    }
    let body = b.len().checked_sub(32)?;
    let sum: [u8; 32] = Sha256::digest(&b[..body]).into();
    if sum[..] != b[body..] || &b[..8] != MAGIC {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4])) as usize;
    if u32_at(8) != VERSION as usize || b[12..44] != key.0 {
        return None;
    }
    if (u32_at(44), u32_at(48), u32_at(52)) != (shape.n_layer, shape.n_cells, shape.row_len) {
        return None;
    }
    let ty = GgmlType::from_id(u32_at(56) as u32).and_then(KvType::from_ggml_type);
    if ty != Some(shape.ty) {
        return None;
    }
    let payload = &b[HEADER_LEN..body];
    (payload.len() == shape.payload_bytes()).then(|| payload.to_vec())
}

/// Writes an entry atomically: temporary file, fsync, rename.
fn write_file(dir: &Path, key: &DocKey, shape: Shape, data: &[u8]) -> Result<(), DocCacheError> {
    let path = DocCache::path(dir, key);
    let tmp = dir.join(format!(".{}.{}.tmp", key.hex(), std::process::id()));
    let io = |source| DocCacheError::Io { path: tmp.clone(), source };
    let mut buf = Vec::with_capacity(HEADER_LEN + data.len() + 32);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&key.0);
    for v in [shape.n_layer, shape.n_cells, shape.row_len] {
        buf.extend_from_slice(&(v as u32).to_le_bytes());
    }
    buf.extend_from_slice(&shape.ty.ggml_type().id().to_le_bytes());
    buf.extend_from_slice(data);
    let sum: [u8; 32] = Sha256::digest(&buf).into();
    buf.extend_from_slice(&sum);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&buf).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|source| DocCacheError::Io { path, source })?;
    Ok(())
}

fn backend_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> DocCacheError {
    DocCacheError::Backend(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_bytes(key: &DocKey, shape: Shape, version: u32, type_field: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&key.0);
        for v in [shape.n_layer, shape.n_cells, shape.row_len] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        if type_field {
            b.extend_from_slice(&shape.ty.ggml_type().id().to_le_bytes());
        }
        b.extend((0..shape.payload_bytes()).map(|i| i as u8));
        let sum: [u8; 32] = Sha256::digest(&b).into();
        b.extend_from_slice(&sum);
        b
    }

    #[test]
    fn parse_checks_version_type_and_shape() {
        let key = DocKey([7; 32]);
        let s32 = Shape { n_layer: 2, n_cells: 3, row_len: 4, ty: KvType::F32 };
        let s16 = Shape { ty: KvType::F16, ..s32 };
        for s in [s32, s16] {
            let good = file_bytes(&key, s, VERSION, true);
            assert_eq!(good.len(), HEADER_LEN + s.payload_bytes() + 32);
            assert_eq!(parse(&good, &key, s).map(|p| p.len()), Some(s.payload_bytes()));
            // Another key, another shape, another type: rejected.
            assert!(parse(&good, &DocKey([8; 32]), s).is_none());
            assert!(parse(&good, &key, Shape { n_cells: 2, ..s }).is_none());
            let other = if s.ty == KvType::F32 { s16 } else { s32 };
            assert!(parse(&good, &key, other).is_none(), "{:?} file read as {:?}", s.ty, other.ty);
            // A version 1 file (no type field) with a valid checksum: rejected.
            let v1 = file_bytes(&key, s, 1, false);
            assert!(parse(&v1, &key, s).is_none());
            // A flipped payload bit or a truncated file: rejected.
            let mut bad = good.clone();
            bad[HEADER_LEN] ^= 1;
            assert!(parse(&bad, &key, s).is_none());
            assert!(parse(&good[..40], &key, s).is_none());
        }
    }

    #[test]
    fn lru_budget_counts_bytes_once_and_evicts_oldest() {
        let mut c = DocCache::new("m", 100);
        c.insert(DocKey([1; 32]), vec![0; 40], KvType::F16);
        c.insert(DocKey([2; 32]), vec![0; 40], KvType::F16);
        // Replacing an entry does not count its bytes twice.
        c.insert(DocKey([2; 32]), vec![0; 50], KvType::F16);
        assert_eq!((c.stats().bytes, c.stats().entries, c.stats().evictions), (90, 2, 0));
        // Over budget: the least recently used entries go until it fits.
        c.insert(DocKey([3; 32]), vec![0; 60], KvType::F16);
        let st = c.stats();
        assert_eq!((st.bytes, st.entries, st.evictions), (60, 1, 2));
        assert!(c.mem.contains_key(&DocKey([3; 32])));
        // Larger than the whole budget: not kept.
        c.insert(DocKey([4; 32]), vec![0; 101], KvType::F16);
        assert_eq!(c.stats().bytes, 60);
    }
}
