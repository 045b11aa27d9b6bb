//! The malformed-file corpus (tests/data/malformed, made by tests/data/gen_malformed.py): every
//! file must be rejected with a one-line error containing the text listed in expected.tsv.
//! Also checks the tiny valid files beside it (tests/data/valid) parse.

use std::path::{Path, PathBuf};

use weft::gguf::{GgufFile, MetaValue};
use weft::GgmlType;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// (file name, expected message fragment) from the manifest.
fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data_dir().join("malformed/expected.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (file, expected) = l.split_once('\t').unwrap_or_else(|| panic!("bad line {l:?}"));
            (file.to_string(), expected.to_string())
        })
        .collect()
}

#[test]
fn every_malformed_file_is_rejected_with_its_message() {
    let cases = manifest();
    assert!(cases.len() >= 35, "corpus has only {} files", cases.len());
    let mut failures = Vec::new();
    for (file, expected) in &cases {
        let path = data_dir().join("malformed").join(file);
        let msg = match GgufFile::open(&path) {
            Ok(_) => {
                failures.push(format!("{file}: parsed successfully"));
                continue;
            }
            Err(e) => e.to_string(),
        };
        if !msg.contains(expected.as_str()) {
            failures.push(format!("{file}: {msg:?} lacks {expected:?}"));
        }
        if msg.contains('\n') {
            failures.push(format!("{file}: message is not one line: {msg:?}"));
        }
        // The in-memory path must agree with the mapped one.
        let bytes = std::fs::read(&path).unwrap();
        match GgufFile::from_bytes(bytes) {
            Ok(_) => failures.push(format!("{file}: from_bytes accepted it")),
            Err(e) if e.to_string() != msg => {
                failures.push(format!("{file}: from_bytes says {e} but open says {msg}"))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_corpus_file_is_in_the_manifest() {
    let listed: Vec<String> = manifest().into_iter().map(|(f, _)| f).collect();
    for entry in std::fs::read_dir(data_dir().join("malformed")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".gguf") {
            assert!(listed.contains(&name), "{name} has no line in expected.tsv");
        }
    }
}

#[test]
fn valid_fixtures_parse() {
    let dir = data_dir().join("valid");
    for (file, version) in [("tiny_v3.gguf", 3), ("tiny_v2.gguf", 2)] {
        let f = GgufFile::open(dir.join(file)).unwrap();
        assert_eq!(f.version(), version);
        assert_eq!(f.architecture(), Some("llama"));
        let w = f.tensor("w").unwrap();
        assert_eq!((w.ggml_type, w.dims), (GgmlType::F32, &[8u64][..]));
        assert_eq!(w.data, (0u8..32).collect::<Vec<_>>());
    }

    let f = GgufFile::open(dir.join("no_tensors.gguf")).unwrap();
    assert!(f.tensors().is_empty());
    assert_eq!(f.u32("{arch}.block_count").unwrap(), 2);

    let f = GgufFile::open(dir.join("all_types_align_64.gguf")).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(f.get("a.i64"), Some(&MetaValue::I64(-1)));
    assert_eq!(f.get("a.i8"), Some(&MetaValue::I8(-1)));
    assert_eq!(f.f32("a.f64").unwrap(), 1e-6);
    assert_eq!(f.str_array("a.strs").unwrap(), ["x", ""]);
    assert_eq!(f.tensor("q").unwrap().data.len(), 68);
    assert_eq!(f.tensors()[1].offset, 128);
}

/// A small file written by `GgufWriter` (all value types, nested arrays, three tensor types),
/// checked in as a fuzz seed and as a guard that the writer's output stays byte-identical.
/// Regenerate with `WEFT_BLESS=1 cargo test -p weft-tests --test gguf_malformed`.
fn writer_sample() -> Vec<u8> {
    use weft::gguf::{GgufWriter, MetaArray};
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("llama".into()));
    w.add_metadata("llama.block_count", MetaValue::U32(1));
    w.add_metadata("llama.rope.freq_base", MetaValue::F32(10000.0));
    w.add_metadata("t.i64", MetaValue::I64(-5));
    w.add_metadata("t.f64", MetaValue::F64(0.125));
    w.add_metadata("t.bool", MetaValue::Bool(true));
    w.add_metadata("t.u16", MetaValue::U16(7));
    w.add_metadata(
        "tokenizer.ggml.tokens",
        MetaValue::Array(MetaArray::String(vec!["<s>".into(), "a".into(), "é".into()])),
    );
    w.add_metadata(
        "tokenizer.ggml.scores",
        MetaValue::Array(MetaArray::F32(vec![0.0, -1.0, -2.0])),
    );
    w.add_metadata(
        "t.nested",
        MetaValue::Array(MetaArray::Array(vec![
            MetaArray::I32(vec![1, -1]),
            MetaArray::Array(vec![MetaArray::Bool(vec![true])]),
        ])),
    );
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    w.add_tensor("output_norm.weight", GgmlType::F32, &[8], f32s).unwrap();
    w.add_tensor("token_embd.weight", GgmlType::Q8_0, &[32, 3], (0..102).collect()).unwrap();
    w.add_tensor("blk.0.ffn_down.weight", GgmlType::Q4_K, &[256, 1], vec![0x11; 144]).unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn writer_sample_fixture_is_current() {
    let path = data_dir().join("valid/writer_sample.gguf");
    let bytes = writer_sample();
    if std::env::var("WEFT_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &bytes).unwrap();
    }
    let on_disk = std::fs::read(&path).expect("run with WEFT_BLESS=1 to create the fixture");
    assert!(on_disk == bytes, "writer output changed; re-bless if intended");
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.str_array("tokenizer.ggml.tokens").unwrap(), ["<s>", "a", "é"]);
    assert_eq!(f.tensor("token_embd.weight").unwrap().data, (0..102).collect::<Vec<u8>>());
    assert_eq!(f.tensors().iter().map(|t| t.offset).collect::<Vec<_>>(), [0, 32, 160]);
}
