//! `weft inspect MODEL`: what a GGUF file holds — architecture, hyperparameters, tokenizer,
//! tensors and their types — as text, or as JSON with `--json`.
//!
//! The report is built once ([`Report::new`]) and rendered by [`render_text`] or serialised;
//! both are unit-tested on small files made with `GgufWriter`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};
use weft::gguf::{GgufFile, MetaArray, MetaValue};
use weft::GgmlType;

/// Arguments of `weft inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// GGUF file path (or a manifest model name, where the CLI resolves names)
    pub model: String,
    /// Print machine-readable JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Opens the file and prints its report to stdout.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let path = crate::cmd::models::resolve_or_fetch(&args.model)?;
    inspect_path(&path.to_string_lossy(), args.json)
}

/// The body of `run` for an already-resolved path.
pub fn inspect_path(path: &str, json: bool) -> anyhow::Result<()> {
    // Formatted into one message (not `.context`) so the CLI prints exactly one line.
    let file = GgufFile::open(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let report = Report::new(path, &file);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    Ok(())
}

/// Arrays longer than this are summarised (type and length) in JSON rather than listed: a
/// vocabulary is 150k strings.
const JSON_ARRAY_MAX: usize = 64;

/// Everything `inspect` prints.
#[derive(Serialize, Debug)]
pub struct Report {
    pub path: String,
    pub file_size: u64,
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub architecture: Option<String>,
    pub name: Option<String>,
    /// `{arch}.*` keys, in file order, with the `{arch}.` prefix removed (a JSON object).
    #[serde(serialize_with = "ordered_map")]
    pub hyperparameters: Vec<(String, Value)>,
    /// Every other key that is neither `{arch}.*` nor `tokenizer.*` (`general.*` mostly).
    #[serde(serialize_with = "ordered_map")]
    pub general: Vec<(String, Value)>,
    pub tokenizer: Option<TokenizerSummary>,
    pub tensors: Vec<TensorRow>,
    pub types: Vec<TypeRow>,
    pub n_params: u64,
    pub tensor_bytes: u64,
}

/// Key/value pairs as a JSON object whose keys keep file order.
fn ordered_map<S: serde::Serializer>(pairs: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// The `tokenizer.ggml.*` keys that matter for running the model.
#[derive(Serialize, Debug, Default)]
pub struct TokenizerSummary {
    pub model: Option<String>,
    pub pre: Option<String>,
    pub n_vocab: Option<usize>,
    pub n_merges: Option<usize>,
    pub bos: Option<SpecialToken>,
    pub eos: Option<SpecialToken>,
    pub eot: Option<SpecialToken>,
    pub pad: Option<SpecialToken>,
    pub unk: Option<SpecialToken>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub chat_template: bool,
}

/// A special token id with its text (`None` when the id is past the vocabulary).
#[derive(Serialize, Debug, PartialEq)]
pub struct SpecialToken {
    pub id: u64,
    pub text: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct TensorRow {
    pub name: String,
    #[serde(rename = "type")]
    pub ggml_type: String,
    /// ne order (`shape[0]` contiguous), as llama.cpp prints it.
    pub shape: Vec<u64>,
    pub n_elements: u64,
    pub bytes: u64,
    /// From the start of the data section.
    pub offset: u64,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct TypeRow {
    #[serde(rename = "type")]
    pub ggml_type: String,
    pub count: usize,
    pub bytes: u64,
    pub n_elements: u64,
}

impl Report {
    pub fn new(path: &str, f: &GgufFile) -> Report {
        let arch = f.architecture().map(str::to_string);
        let arch_prefix = arch.as_ref().map(|a| format!("{a}."));
        let mut hyperparameters = Vec::new();
        let mut general = Vec::new();
        for (key, value) in f.metadata() {
            if let Some(rest) = arch_prefix.as_ref().and_then(|p| key.strip_prefix(p.as_str())) {
                hyperparameters.push((rest.to_string(), to_json(value)));
            } else if !key.starts_with("tokenizer.") && key != "general.architecture" {
                general.push((key.clone(), to_json(value)));
            }
        }

        let mut by_type: BTreeMap<GgmlType, TypeRow> = BTreeMap::new();
        let mut tensors = Vec::with_capacity(f.tensors().len());
        for t in f.tensors() {
            let n_elements = t.n_elements();
            let row = by_type.entry(t.ggml_type).or_insert_with(|| TypeRow {
                ggml_type: t.ggml_type.name().to_string(),
                count: 0,
                bytes: 0,
                n_elements: 0,
            });
            row.count += 1;
            row.bytes += t.n_bytes;
            row.n_elements += n_elements;
            tensors.push(TensorRow {
                name: t.name.clone(),
                ggml_type: t.ggml_type.name().to_string(),
                shape: t.dims.clone(),
                n_elements,
                bytes: t.n_bytes,
                offset: t.offset,
            });
        }
        let mut types: Vec<TypeRow> = by_type.into_values().collect();
        // Largest share first: that is what decides speed and size.
        types.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ggml_type.cmp(&b.ggml_type)));

        Report {
            path: path.to_string(),
            file_size: f.file_size(),
            version: f.version(),
            alignment: f.alignment(),
            data_offset: f.data_offset(),
            architecture: arch,
            name: f.str_opt("general.name").ok().flatten().map(str::to_string),
            hyperparameters,
            general,
            tokenizer: tokenizer_summary(f),
            n_params: tensors.iter().map(|t| t.n_elements).sum(),
            tensor_bytes: tensors.iter().map(|t| t.bytes).sum(),
            tensors,
            types,
        }
    }
}

/// `None` when the file has no `tokenizer.*` key at all. Keys of the wrong type are shown as
/// absent rather than failing the whole report: inspect is for looking at odd files too.
fn tokenizer_summary(f: &GgufFile) -> Option<TokenizerSummary> {
    if !f.metadata().iter().any(|(k, _)| k.starts_with("tokenizer.")) {
        return None;
    }
    let tokens = f.str_array("tokenizer.ggml.tokens").ok();
    let special = |key: &str| {
        let id = f.u64(&format!("tokenizer.ggml.{key}_token_id")).ok()?;
        let text = tokens.and_then(|t| usize::try_from(id).ok().and_then(|i| t.get(i))).cloned();
        Some(SpecialToken { id, text })
    };
    let merges = match f.get("tokenizer.ggml.merges") {
        Some(MetaValue::Array(a)) => Some(a.len()),
        _ => None,
    };
    Some(TokenizerSummary {
        model: f.str_opt("tokenizer.ggml.model").ok().flatten().map(str::to_string),
        pre: f.str_opt("tokenizer.ggml.pre").ok().flatten().map(str::to_string),
        n_vocab: tokens.map(<[String]>::len),
        n_merges: merges,
        bos: special("bos"),
        eos: special("eos"),
        eot: special("eot"),
        pad: special("padding"),
        unk: special("unknown"),
        add_bos: f.bool_opt("tokenizer.ggml.add_bos_token").ok().flatten(),
        add_eos: f.bool_opt("tokenizer.ggml.add_eos_token").ok().flatten(),
        chat_template: f.get("tokenizer.chat_template").is_some(),
    })
}

/// A metadata value as JSON; long arrays become `{"type": .., "len": ..}`.
pub fn to_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F32(x) => f32_json(*x),
        MetaValue::F64(x) => json!(x),
        MetaValue::Bool(x) => json!(x),
        MetaValue::String(s) => json!(s),
        MetaValue::Array(a) => array_json(a),
    }
}

/// An f32 as the shortest decimal that reads back as the same f32 (1e-5, not the f64 widening
/// 9.999999747378752e-6). NaN and infinities become null, as serde_json does.
fn f32_json(x: f32) -> Value {
    x.to_string().parse::<f64>().map_or(Value::Null, |d| json!(d))
}

fn array_json(a: &MetaArray) -> Value {
    if a.len() > JSON_ARRAY_MAX {
        return json!({ "type": a.type_name(), "len": a.len() });
    }
    match a {
        MetaArray::U8(v) => json!(v),
        MetaArray::I8(v) => json!(v),
        MetaArray::U16(v) => json!(v),
        MetaArray::I16(v) => json!(v),
        MetaArray::U32(v) => json!(v),
        MetaArray::I32(v) => json!(v),
        MetaArray::U64(v) => json!(v),
        MetaArray::I64(v) => json!(v),
        MetaArray::F32(v) => Value::Array(v.iter().map(|&x| f32_json(x)).collect()),
        MetaArray::F64(v) => json!(v),
        MetaArray::Bool(v) => json!(v),
        MetaArray::String(v) => json!(v),
        MetaArray::Array(v) => Value::Array(v.iter().map(array_json).collect()),
    }
}

/// Short text of a JSON value for the text report: long strings cut, summaries spelled out.
fn short(v: &Value) -> String {
    const MAX: usize = 60;
    match v {
        Value::String(s) if s.chars().count() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            format!("{cut:?}... ({} chars)", s.chars().count())
        }
        Value::Object(o) if o.contains_key("len") => {
            format!("{} (not listed)", o.get("type").and_then(Value::as_str).unwrap_or("array"))
        }
        other => other.to_string(),
    }
}

/// Binary size with a unit: `1.50 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{x:.2} {}", UNITS[unit])
    }
}

fn token_text(t: &Option<SpecialToken>) -> String {
    match t {
        None => "-".into(),
        Some(SpecialToken { id, text: Some(text) }) => format!("{id} {text:?}"),
        Some(SpecialToken { id, text: None }) => format!("{id} (past the vocabulary)"),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

/// The text report. Infallible: writing to a String cannot fail.
pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = write_text(&mut o, r);
    o
}

fn write_text(o: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(o, "file           {}", r.path)?;
    writeln!(
        o,
        "format         GGUF v{}, {} ({} bytes), alignment {}, data at byte {}",
        r.version,
        human_bytes(r.file_size),
        r.file_size,
        r.alignment,
        r.data_offset
    )?;
    writeln!(o, "architecture   {}", opt(&r.architecture))?;
    if let Some(name) = &r.name {
        writeln!(o, "name           {name}")?;
    }

    if !r.hyperparameters.is_empty() {
        writeln!(o, "\nhyperparameters ({}.*)", opt(&r.architecture))?;
        let w = r.hyperparameters.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &r.hyperparameters {
            writeln!(o, "  {k:<w$}  {}", short(v))?;
        }
    }

    if let Some(t) = &r.tokenizer {
        writeln!(o, "\ntokenizer")?;
        writeln!(o, "  model          {}", opt(&t.model))?;
        writeln!(o, "  pre-tokenizer  {}", opt(&t.pre))?;
        writeln!(o, "  vocab          {} tokens, {} merges", opt(&t.n_vocab), opt(&t.n_merges))?;
        writeln!(o, "  bos            {}", token_text(&t.bos))?;
        writeln!(o, "  eos            {}", token_text(&t.eos))?;
        writeln!(o, "  eot            {}", token_text(&t.eot))?;
        writeln!(o, "  pad            {}", token_text(&t.pad))?;
        writeln!(o, "  unk            {}", token_text(&t.unk))?;
        writeln!(o, "  add_bos        {}", opt(&t.add_bos))?;
        writeln!(o, "  add_eos        {}", opt(&t.add_eos))?;
        writeln!(o, "  chat template  {}", if t.chat_template { "yes" } else { "no" })?;
    }

    if !r.general.is_empty() {
        writeln!(o, "\nother metadata")?;
        let w = r.general.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &r.general {
            writeln!(o, "  {k:<w$}  {}", short(v))?;
        }
    }

    writeln!(o, "\ntensors ({})", r.tensors.len())?;
    let shape = |s: &[u64]| s.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
    let wn = r.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let ws = r.tensors.iter().map(|t| shape(&t.shape).len()).max().unwrap_or(5).max(5);
    writeln!(o, "  {:<wn$}  {:<7}  {:<ws$}  {:>12}", "name", "type", "shape", "bytes")?;
    for t in &r.tensors {
        writeln!(
            o,
            "  {:<wn$}  {:<7}  {:<ws$}  {:>12}",
            t.name,
            t.ggml_type,
            shape(&t.shape),
            t.bytes
        )?;
    }

    writeln!(o, "\ntensor types")?;
    for t in &r.types {
        let share =
            if r.tensor_bytes == 0 { 0.0 } else { 100.0 * t.bytes as f64 / r.tensor_bytes as f64 };
        writeln!(
            o,
            "  {:<7}  {:>5} tensors  {:>12}  {:5.1}%",
            t.ggml_type,
            t.count,
            human_bytes(t.bytes),
            share
        )?;
    }
    writeln!(
        o,
        "\ntotal          {} tensors, {} parameters, {} of tensor data, file {}",
        r.tensors.len(),
        r.n_params,
        human_bytes(r.tensor_bytes),
        human_bytes(r.file_size)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft::gguf::GgufWriter;

    fn sample() -> GgufFile {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", MetaValue::String("llama".into()));
        w.add_metadata("general.name", MetaValue::String("tiny".into()));
        w.add_metadata("llama.block_count", MetaValue::U32(2));
        w.add_metadata("llama.rope.freq_base", MetaValue::F32(10000.0));
        w.add_metadata("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
        let tokens: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        w.add_metadata("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens)));
        w.add_metadata("tokenizer.ggml.bos_token_id", MetaValue::U32(1));
        w.add_metadata("tokenizer.ggml.eos_token_id", MetaValue::U32(500));
        w.add_metadata("tokenizer.ggml.add_bos_token", MetaValue::Bool(true));
        w.add_tensor("token_embd.weight", GgmlType::Q8_0, &[32, 100], vec![0; 3400]).unwrap();
        w.add_tensor("output_norm.weight", GgmlType::F32, &[32], vec![0; 128]).unwrap();
        w.add_tensor("blk.0.attn_q.weight", GgmlType::Q8_0, &[32, 32], vec![0; 1088]).unwrap();
        GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn report_fields() {
        let r = Report::new("x.gguf", &sample());
        assert_eq!(r.architecture.as_deref(), Some("llama"));
        assert_eq!(r.name.as_deref(), Some("tiny"));
        let keys: Vec<&str> = r.hyperparameters.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["block_count", "rope.freq_base"]);
        assert_eq!(r.hyperparameters[0].1, json!(2));
        let t = r.tokenizer.as_ref().unwrap();
        assert_eq!(t.n_vocab, Some(100));
        assert_eq!(t.bos, Some(SpecialToken { id: 1, text: Some("t1".into()) }));
        assert_eq!(t.eos, Some(SpecialToken { id: 500, text: None }));
        assert_eq!(t.eot, None);
        assert_eq!(t.add_bos, Some(true));
        assert_eq!(r.tensors.len(), 3);
        assert_eq!(r.tensors[0].shape, [32, 100]);
        assert_eq!(r.n_params, 3200 + 32 + 1024);
        assert_eq!(r.tensor_bytes, 3400 + 128 + 1088);
        assert_eq!(
            r.types,
            [
                TypeRow { ggml_type: "q8_0".into(), count: 2, bytes: 4488, n_elements: 4224 },
                TypeRow { ggml_type: "f32".into(), count: 1, bytes: 128, n_elements: 32 },
            ]
        );
    }

    #[test]
    fn text_report() {
        let text = render_text(&Report::new("x.gguf", &sample()));
        for needle in [
            "architecture   llama",
            "block_count     2",
            "bos            1 \"t1\"",
            "eos            500 (past the vocabulary)",
            "vocab          100 tokens, - merges",
            "token_embd.weight",
            "32 x 100",
            "q8_0         2 tensors",
            "total          3 tensors, 4256 parameters",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
    }

    #[test]
    fn json_report_summarises_long_arrays() {
        let v = serde_json::to_value(Report::new("x.gguf", &sample())).unwrap();
        assert_eq!(v["architecture"], "llama");
        assert_eq!(v["tensors"][0]["type"], "q8_0");
        assert_eq!(v["tokenizer"]["bos"]["text"], "t1");
        assert_eq!(v["hyperparameters"]["rope.freq_base"], 10000.0);
        let text = serde_json::to_string(&Report::new("x.gguf", &sample())).unwrap();
        assert!(text.contains(r#""hyperparameters":{"block_count":2,"rope.freq_base":10000.0}"#));
        let long = to_json(&MetaValue::Array(MetaArray::U8(vec![0; 65])));
        assert_eq!(long, json!({"type": "array[u8; 65]", "len": 65}));
        assert_eq!(to_json(&MetaValue::F32(1e-5)), json!(1e-5f64));
        assert_eq!(to_json(&MetaValue::F32(f32::NAN)), Value::Null);
        let nested = MetaArray::Array(vec![MetaArray::I32(vec![1]), MetaArray::Bool(vec![])]);
        assert_eq!(to_json(&MetaValue::Array(nested)), json!([[1], []]));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
    }
}
