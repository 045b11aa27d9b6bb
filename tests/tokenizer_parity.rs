//! Tokenizer parity with llama.cpp on the default models: every case of
//! `refs/tokenize_<tag>.json` and every prompt of `refs/logits_<tag>.json`, plus hand cases, and
//! both models' chat templates.

use std::path::Path;

use serde::Deserialize;
use weft::gguf::GgufFile;
use weft::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(Deserialize)]
struct TokRefs {
    add_bos: bool,
    cases: Vec<TokCase>,
}

#[derive(Deserialize)]
struct TokCase {
    text: String,
    ids: Vec<u32>,
    ids_special: Vec<u32>,
    ids_default: Vec<u32>,
}

#[derive(Deserialize)]
struct LogitsCase {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
}

fn load(model: &str) -> Option<(GgufFile, Tokenizer)> {
    let path = weft_tests::model_path(model)?;
    let f = GgufFile::open(&path).expect("open model");
    let t = Tokenizer::from_gguf(&f).expect("tokenizer");
    Some((f, t))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pieces(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&i| String::from_utf8_lossy(t.token_to_piece(i)).into_owned()).collect()
}

/// All reference cases of one model; fails listing every mismatch.
fn check_refs(t: &Tokenizer, tag: &str) {
    let refs: TokRefs = read_json(&weft_tests::refs_dir().join(format!("tokenize_{tag}.json")));
    assert_eq!(t.add_bos(), refs.add_bos, "add_bos");
    let mut bad = Vec::new();
    for c in &refs.cases {
        let got = t.encode(&c.text, false, false).unwrap();
        if got != c.ids {
            bad.push(format!("{:?} plain: got {got:?} want {:?}", c.text, c.ids));
        }
        let got = t.encode(&c.text, false, true).unwrap();
        if got != c.ids_special {
            bad.push(format!("{:?} special: got {got:?} want {:?}", c.text, c.ids_special));
        }
        let got = t.encode(&c.text, true, false).unwrap();
        if got != c.ids_default {
            bad.push(format!("{:?} default: got {got:?} want {:?}", c.text, c.ids_default));
        }
        assert_eq!(t.decode(&c.ids), c.text, "round trip {:?}", c.text);
        assert_eq!(t.decode(&c.ids_special), c.text, "round trip (special) {:?}", c.text);
    }
    let logits: Vec<LogitsCase> =
        read_json(&weft_tests::refs_dir().join(format!("logits_{tag}.json")));
    for c in &logits {
        let got = t.encode(&c.prompt, false, false).unwrap();
        if got != c.prompt_ids {
            bad.push(format!("prompt {:?}: got {got:?} want {:?}", c.prompt, c.prompt_ids));
        }
        assert_eq!(t.decode(&c.greedy_ids), c.greedy_text, "greedy text of {:?}", c.prompt);
    }
    assert!(bad.is_empty(), "{tag}: {} mismatches:\n{}", bad.len(), bad.join("\n"));
}

/// Hand cases whose split follows from the pre-tokenizer rules (common words and whitespace
/// runs are single tokens in both vocabularies).
fn check_hand_cases(t: &Tokenizer, im_start: u32, im_end: u32) {
    assert!(t.encode("", false, false).unwrap().is_empty());
    assert!(t.encode("", true, true).unwrap().is_empty());
    assert_eq!(pieces(t, &t.encode("a   b", false, false).unwrap()), ["a", "  ", " b"]);
    assert_eq!(pieces(t, &t.encode("don't", false, false).unwrap()), ["don", "'t"]);
    assert_eq!(pieces(t, &t.encode("x\n\n\ny", false, false).unwrap()).concat(), "x\n\n\ny");
    // both pre-tokenizers put every digit in its own word
    assert_eq!(pieces(t, &t.encode("12345", false, false).unwrap()), ["1", "2", "3", "4", "5"]);
    let both = "<|im_start|><|im_end|>";
    assert_eq!(t.encode(both, false, true).unwrap(), [im_start, im_end]);
    let plain = t.encode(both, false, false).unwrap();
    assert!(!plain.contains(&im_start) && !plain.contains(&im_end));
    // a partial special token is text even with parse_special
    for partial in ["<|im_start", "im_start|>", "<|im_end|"] {
        let ids = t.encode(partial, false, true).unwrap();
        assert!(!ids.contains(&im_start) && !ids.contains(&im_end), "{partial}");
        assert_eq!(t.decode(&ids), partial);
    }
    for text in [
        "漢字かな交じり文、한국어",
        "👩‍👩‍👧‍👦 🇫🇷 e\u{301}",
        "\u{0}\u{1f}\u{7f}\u{85}\u{2028}",
        "  \t \r\n ",
    ] {
        let ids = t.encode(text, false, false).unwrap();
        assert_eq!(t.decode(&ids), text);
    }
    assert!(t.is_eog(im_end));
    assert_eq!(t.n_skipped_merges(), 0);
}

#[test]
fn smollm2_matches_llama_cpp() {
    let Some((_, t)) = load("smollm2-135m") else { return };
    assert_eq!(t.n_vocab(), 49152);
    check_refs(&t, "smollm2");
    check_hand_cases(&t, 1, 2);
    assert_eq!(t.eog_ids(), [0, 2]);
}

#[test]
fn qwen_matches_llama_cpp() {
    let Some((_, t)) = load("qwen2.5-0.5b") else { return };
    assert_eq!(t.n_vocab(), 151936);
    check_refs(&t, "qwen");
    check_hand_cases(&t, 151644, 151645);
    // user-defined tokens are split out even without parse_special
    assert_eq!(t.encode("<tool_call>", false, false).unwrap(), [151657]);
    // <|endoftext|> <|im_end|> <|fim_pad|> <|repo_name|> <|file_sep|>
    assert_eq!(t.eog_ids(), [151643, 151645, 151662, 151663, 151664]);
}

#[test]
fn chat_templates_render_chatml() {
    let conv = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi!")];
    let user_only = [ChatMessage::new("user", "Hi!")];
    let expect = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n";
    if let Some((f, t)) = load("smollm2-135m") {
        let ct = ChatTemplate::from_gguf(&f, &t).unwrap().expect("smollm2 has a template");
        assert_eq!(ct.render(&conv, false).unwrap(), expect);
        assert_eq!(ct.render(&conv, true).unwrap(), format!("{expect}<|im_start|>assistant\n"));
        assert_eq!(
            ct.render(&user_only, true).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
    }
    if let Some((f, t)) = load("qwen2.5-0.5b") {
        let ct = ChatTemplate::from_gguf(&f, &t).unwrap().expect("qwen has a template");
        assert_eq!(ct.render(&conv, true).unwrap(), format!("{expect}<|im_start|>assistant\n"));
        assert_eq!(
            ct.render(&user_only, false).unwrap(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful \
             assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        );
        // the rendered prompt tokenizes into the ChatML control tokens
        let ids = t.encode(&ct.render(&conv, true).unwrap(), false, true).unwrap();
        assert_eq!(ids[0], 151644);
        assert_eq!(ids.iter().filter(|&&i| i == 151645).count(), 2);
    }
}
