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
