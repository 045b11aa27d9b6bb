//! The GGUF reader on the two default models.

use std::collections::BTreeMap;

use weft::gguf::GgufFile;
use weft::GgmlType;

struct Expect {
    name: &'static str,
    arch: &'static str,
    block_count: u32,
    n_embd: u64,
    n_vocab: usize,
    n_tensors: usize,
    /// tensor type -> count
    types: &'static [(GgmlType, usize)],
}

fn check(e: &Expect) {
    let Some(path) = weft_tests::model_path(e.name) else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture(), Some(e.arch));
    assert_eq!(f.u32("{arch}.block_count").unwrap(), e.block_count);
    assert_eq!(f.u64("{arch}.embedding_length").unwrap(), e.n_embd);
    let tokens = f.str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), e.n_vocab);
    assert_eq!(f.i32_array("tokenizer.ggml.token_type").unwrap().len(), e.n_vocab);
    assert_eq!(f.tensors().len(), e.n_tensors);

    let mut types = BTreeMap::new();
    for t in f.tensors() {
        *types.entry(t.ggml_type).or_insert(0usize) += 1;
    }
    assert_eq!(types, e.types.iter().copied().collect::<BTreeMap<_, _>>());

    // Every tensor's bytes lie inside the file, borrowed from the mapping (no copy).
    let file = f.bytes().as_ptr_range();
    let file_size = f.file_size();
    assert_eq!(file_size, std::fs::metadata(&path).unwrap().len());
    for (i, t) in f.tensors().iter().enumerate() {
        assert!(f.data_offset() + t.offset + t.n_bytes <= file_size, "{}", t.name);
        let v = f.tensor_at(i).unwrap();
        assert_eq!(v.data.len() as u64, t.n_bytes);
        let r = v.data.as_ptr_range();
        assert!(file.start <= r.start && r.end <= file.end, "{} not in the mapping", t.name);
        assert_eq!(t.ggml_type.row_size(v.cols()).unwrap() * v.rows(), t.n_bytes);
    }

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.cols(), embd.rows()), (e.n_embd, e.n_vocab as u64));
    for i in 0..e.block_count {
        let norm = f.tensor(&format!("blk.{i}.attn_norm.weight")).unwrap();
        assert_eq!((norm.ggml_type, norm.dims), (GgmlType::F32, &[e.n_embd][..]));
    }
}

#[test]
fn smollm2_135m() {
    check(&Expect {
        name: "smollm2-135m",
        arch: "llama",
        block_count: 30,
        n_embd: 576,
        n_vocab: 49152,
        // 9 per layer (norms and 7 matrices), output_norm, token_embd (tied output)
        n_tensors: 272,
        types: &[(GgmlType::F32, 61), (GgmlType::Q4_1, 210), (GgmlType::Q8_0, 1)],
    });
    let Some(path) = weft_tests::model_path("smollm2-135m") else { return };
    let f = GgufFile::open(path).unwrap();
    assert_eq!(f.tensor("token_embd.weight").unwrap().ggml_type, GgmlType::Q8_0);
    assert!(f.tensor("output.weight").is_none(), "tied embeddings");
    assert_eq!(f.u32("{arch}.attention.head_count").unwrap(), 9);
    assert_eq!(f.u32("{arch}.attention.head_count_kv").unwrap(), 3);
    assert_eq!(f.f32("{arch}.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(f.f32("{arch}.attention.layer_norm_rms_epsilon").unwrap(), 1e-5);
    assert_eq!(f.u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
    assert_eq!(f.str("tokenizer.ggml.model").unwrap(), "gpt2");
}

#[test]
fn qwen25_coder_05b() {
    check(&Expect {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        block_count: 24,
        n_embd: 896,
        n_vocab: 151936,
        // 12 per layer (incl. q/k/v bias), output_norm, token_embd, output
        n_tensors: 291,
        types: &[
            (GgmlType::F32, 121),
            (GgmlType::Q5_0, 133),
            (GgmlType::Q8_0, 13),
            (GgmlType::Q4_K, 12),
            (GgmlType::Q6_K, 12),
        ],
    });
    let Some(path) = weft_tests::model_path("qwen2.5-0.5b") else { return };
    let f = GgufFile::open(path).unwrap();
    assert_eq!(f.tensor("output.weight").unwrap().ggml_type, GgmlType::Q8_0);
    assert_eq!(f.u32("{arch}.attention.head_count").unwrap(), 14);
    assert_eq!(f.u32("{arch}.attention.head_count_kv").unwrap(), 2);
    assert_eq!(f.f32("{arch}.rope.freq_base").unwrap(), 1e6);
    assert_eq!(f.str("tokenizer.ggml.pre").unwrap(), "qwen2");
    assert!(!f.bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(f.str_array("tokenizer.ggml.merges").unwrap().len(), 151387);
}
