//! Unit tests: writer/reader round trips, accessors, and a few targeted rejections. The
//! malformed-file corpus lives in the tests crate (tests/gguf_malformed.rs).

use super::*;

fn all_value_types() -> Vec<(String, MetaValue)> {
    let nested = MetaArray::Array(vec![
        MetaArray::U32(vec![1, 2, 3]),
        MetaArray::String(vec!["a".into(), "".into()]),
        MetaArray::Array(vec![MetaArray::F64(vec![0.5]), MetaArray::Bool(vec![])]),
    ]);
    vec![
        ("general.architecture".into(), MetaValue::String("llama".into())),
        ("t.u8".into(), MetaValue::U8(250)),
        ("t.i8".into(), MetaValue::I8(-7)),
        ("t.u16".into(), MetaValue::U16(65000)),
        ("t.i16".into(), MetaValue::I16(-30000)),
        ("t.u32".into(), MetaValue::U32(4_000_000_000)),
        ("t.i32".into(), MetaValue::I32(-2_000_000_000)),
        ("t.u64".into(), MetaValue::U64(u64::MAX)),
        ("t.i64".into(), MetaValue::I64(i64::MIN)),
        ("t.f32".into(), MetaValue::F32(1e-5)),
        ("t.f64".into(), MetaValue::F64(1e6)),
        ("t.bool".into(), MetaValue::Bool(true)),
        ("t.str".into(), MetaValue::String("héllo ✓".into())),
        ("t.empty_str".into(), MetaValue::String(String::new())),
        ("t.a.u8".into(), MetaValue::Array(MetaArray::U8(vec![0, 255]))),
        ("t.a.i8".into(), MetaValue::Array(MetaArray::I8(vec![-128, 127]))),
        ("t.a.u16".into(), MetaValue::Array(MetaArray::U16(vec![1, 65535]))),
        ("t.a.i16".into(), MetaValue::Array(MetaArray::I16(vec![-1]))),
        ("t.a.u32".into(), MetaValue::Array(MetaArray::U32(vec![7; 5]))),
        ("t.a.i32".into(), MetaValue::Array(MetaArray::I32(vec![-1, 0, 1]))),
        ("t.a.u64".into(), MetaValue::Array(MetaArray::U64(vec![u64::MAX]))),
        ("t.a.i64".into(), MetaValue::Array(MetaArray::I64(vec![i64::MIN, 3]))),
        ("t.a.f32".into(), MetaValue::Array(MetaArray::F32(vec![0.25, -1.5]))),
        ("t.a.f64".into(), MetaValue::Array(MetaArray::F64(vec![f64::MAX]))),
        ("t.a.bool".into(), MetaValue::Array(MetaArray::Bool(vec![true, false]))),
        ("t.a.str".into(), MetaValue::Array(MetaArray::String(vec!["x".into(), "yz".into()]))),
        ("t.a.empty".into(), MetaValue::Array(MetaArray::F32(vec![]))),
        ("t.a.nested".into(), MetaValue::Array(nested)),
        ("llama.block_count".into(), MetaValue::U32(30)),
        ("llama.rope.freq_base".into(), MetaValue::F32(100000.0)),
    ]
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in all_value_types() {
        w.add_metadata(k, v);
    }
    // f32 [3, 5]: 60 bytes, not a multiple of 32, so padding is exercised
    w.add_tensor("a", GgmlType::F32, &[5, 3], pattern(60, 1)).unwrap();
    // q4_1 [2, 64]: 2 blocks per row of 20 bytes
    w.add_tensor("blk.0.attn_q.weight", GgmlType::Q4_1, &[64, 2], pattern(80, 2)).unwrap();
    w.add_tensor("v", GgmlType::Q8_0, &[32], pattern(34, 3)).unwrap();
    w
}

#[test]
fn round_trip_metadata_and_tensors() {
    let bytes = sample_writer().to_bytes().unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(f.file_size(), bytes.len() as u64);
    assert_eq!(f.metadata(), &all_value_types()[..]);
    assert_eq!(f.tensors().len(), 3);
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "blk.0.attn_q.weight", "v"]);

    let a = f.tensor("a").unwrap();
    assert_eq!(
        (a.ggml_type, a.dims, a.cols(), a.rows(), a.n_elements()),
        (GgmlType::F32, &[5u64, 3][..], 5, 3, 15)
    );
    assert_eq!(a.data, &pattern(60, 1)[..]);
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!((q.ggml_type, q.rows(), q.cols()), (GgmlType::Q4_1, 2, 64));
    assert_eq!(q.data, &pattern(80, 2)[..]);
    assert_eq!(f.tensor("v").unwrap().data, &pattern(34, 3)[..]);
    assert_eq!(f.tensor("v").unwrap().rows(), 1);
    assert!(f.tensor("missing").is_none());
    for (i, t) in f.tensors().iter().enumerate() {
        assert_eq!(t.offset % 32, 0);
        assert_eq!(f.tensor_at(i).unwrap().data.len() as u64, t.n_bytes);
        // data is 32-byte aligned in memory too (from_bytes copies into an aligned buffer)
        assert_eq!(f.tensor_at(i).unwrap().data.as_ptr() as usize % 32, 0);
    }
    assert!(f.tensor_at(3).is_none());
}

#[test]
fn round_trip_custom_alignment() {
    let mut w = sample_writer();
    w.add_metadata("general.alignment", MetaValue::U32(64));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert!(f.tensors().iter().all(|t| t.offset % 64 == 0));
    assert_eq!(f.tensor("a").unwrap().data, &pattern(60, 1)[..]);
}

#[test]
fn open_from_disk_matches_from_bytes() {
    let dir = std::env::temp_dir().join(format!("weft-gguf-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    sample_writer().write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.metadata(), &all_value_types()[..]);
    assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().data, &pattern(80, 2)[..]);
    std::fs::write(dir.join("empty.gguf"), b"").unwrap();
    let e = GgufFile::open(dir.join("empty.gguf")).unwrap_err();
    assert!(e.to_string().starts_with("truncated file: magic"), "{e}");
    let e = GgufFile::open(dir.join("nope.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e}");
    let e = GgufFile::open(&dir).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn typed_accessors() {
    let f = GgufFile::from_bytes(sample_writer().to_bytes().unwrap()).unwrap();
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.u32("{arch}.block_count").unwrap(), 30);
    assert_eq!(f.u32("t.u8").unwrap(), 250);
    assert_eq!(f.u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.f32("{arch}.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(f.f32("t.f64").unwrap(), 1e6);
    assert!(f.bool("t.bool").unwrap());
    assert_eq!(f.str("t.str").unwrap(), "héllo ✓");
    assert_eq!(f.str_array("t.a.str").unwrap(), ["x", "yz"]);
    assert_eq!(f.f32_array("t.a.f32").unwrap(), [0.25, -1.5]);
    assert_eq!(f.i32_array("t.a.i32").unwrap(), [-1, 0, 1]);
    assert_eq!(f.array("t.a.nested").unwrap().len(), 3);
    assert_eq!(f.get("{arch}.block_count"), Some(&MetaValue::U32(30)));

    assert_eq!(f.u32_opt("{arch}.missing").unwrap(), None);
    assert_eq!(f.f32_opt("t.f32").unwrap(), Some(1e-5));
    assert_eq!(f.bool_opt("nope").unwrap(), None);
    assert_eq!(f.str_opt("t.str").unwrap(), Some("héllo ✓"));
    assert_eq!(f.str_opt("nope").unwrap(), None);

    let e = f.u32("{arch}.missing").unwrap_err();
    assert_eq!(e.to_string(), "missing metadata key \"llama.missing\"");
    let e = f.u32("t.i32").unwrap_err();
    assert_eq!(
        e.to_string(),
        "wrong type for metadata key \"t.i32\": expected u32, found i32 -2000000000"
    );
    assert!(f.u32("t.u64").is_err(), "u64::MAX does not fit in u32");
    assert!(f.u32("t.str").is_err());
    assert!(f.u32_opt("t.str").is_err(), "wrong type is an error even for _opt");
    assert!(f.str_opt("t.u8").is_err());
    assert!(f.f32("t.u32").is_err());
    assert!(f.str_array("t.a.f32").is_err());
    assert!(f.bool("t.u8").is_err());
}

#[test]
fn arch_placeholder_without_architecture() {
    let mut w = GgufWriter::new();
    w.add_metadata("x", MetaValue::U32(1));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.architecture(), None);
    assert_eq!(f.get("{arch}.block_count"), None);
    assert_eq!(f.u32_opt("{arch}.block_count").unwrap(), None);
    let e = f.u32("{arch}.block_count").unwrap_err();
    assert!(e.to_string().contains("{arch}.block_count"), "{e}");
    assert!(f.tensors().is_empty());
}

#[test]
fn writer_rejects_bad_tensors() {
    let mut w = GgufWriter::new();
    assert!(w.add_tensor("t", GgmlType::Q4_0, &[16], vec![0; 9]).is_err(), "half a block");
    assert!(w.add_tensor("t", GgmlType::F32, &[], vec![]).is_err());
    assert!(w.add_tensor("t", GgmlType::F32, &[1, 1, 1, 1, 1], vec![0; 4]).is_err());
    assert!(w.add_tensor("t", GgmlType::F32, &[0], vec![]).is_err());
    assert!(w.add_tensor("t", GgmlType::F32, &[2], vec![0; 4]).is_err(), "wrong byte count");
    assert!(w.add_tensor("t", GgmlType::F32, &[u64::MAX, 2], vec![]).is_err());
    assert!(w.add_tensor("", GgmlType::F32, &[1], vec![0; 4]).is_err());
    w.add_tensor("t", GgmlType::F32, &[1], vec![0; 4]).unwrap();
    assert!(w.add_tensor("t", GgmlType::F32, &[1], vec![0; 4]).is_err(), "duplicate");
    w.add_metadata("general.alignment", MetaValue::U32(48));
    assert!(w.to_bytes().is_err());
    w.add_metadata("general.alignment", MetaValue::U64(64));
    assert!(w.to_bytes().is_err());
    w.add_metadata("general.alignment", MetaValue::U32(8));
    let mut with_placeholder = GgufWriter::new();
    with_placeholder.add_metadata("{arch}.x", MetaValue::U8(0));
    assert!(with_placeholder.to_bytes().is_err());
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.alignment(), 8);
    assert_eq!(f.metadata().len(), 1, "re-set key replaced, not duplicated");
}

#[test]
fn nesting_limit_is_shared_by_writer_and_reader() {
    fn nest(depth: usize) -> MetaArray {
        (1..depth).fold(MetaArray::U8(vec![1]), |a, _| MetaArray::Array(vec![a]))
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", MetaValue::Array(nest(MAX_ARRAY_DEPTH)));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    assert_eq!(f.get("deep"), Some(&MetaValue::Array(nest(MAX_ARRAY_DEPTH))));
    w.add_metadata("deep", MetaValue::Array(nest(MAX_ARRAY_DEPTH + 1)));
    assert!(w.to_bytes().is_err());
}

/// Every prefix of a valid file is rejected (never a panic), with "truncated" or a count error.
#[test]
fn every_truncation_is_an_error() {
    let bytes = sample_writer().to_bytes().unwrap();
    // the last tensor's padding is not data, so cutting it is still a valid file
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    let v = f.tensor("v").unwrap();
    let min_len = (f.data_offset() + f.tensors()[2].offset) as usize + v.data.len();
    for len in 0..min_len {
        let e = GgufFile::from_bytes(bytes[..len].to_vec()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("truncated file")
                || msg.starts_with("absurd count")
                || msg.starts_with("string length past the end")
                || msg.starts_with("tensor data out of range"),
            "len {len}: {msg}"
        );
        assert!(!msg.contains('\n'));
    }
    assert!(GgufFile::from_bytes(bytes[..min_len].to_vec()).is_ok());
}

/// Flipping any single header byte never panics (errors or a different valid file).
#[test]
fn single_byte_corruptions_never_panic() {
    let bytes = sample_writer().to_bytes().unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    for i in 0..f.data_offset() as usize {
        for x in [0x00, 0xff, 0x80, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= x;
            if let Ok(g) = GgufFile::from_bytes(b) {
                for t in 0..g.tensors().len() {
                    let v = g.tensor_at(t).unwrap();
                    assert_eq!(v.data.len() as u64, g.tensors()[t].n_bytes);
                }
            }
        }
    }
}
