//! Tokenizers on tiny hand-built vocabularies, with hand-traced expected ids.

use super::*;
use crate::gguf::{GgufFile, GgufWriter, MetaArray, MetaValue};

/// SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens (id 3 + byte), then pieces whose
/// scores set the merge order (higher first).
fn spm_vocab() -> Vocab {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(TokenType::Byte);
        scores.push(0.0);
    }
    let pieces: [(&str, f32); 17] = [
        ("▁", -1.0),      // 259
        ("h", -2.0),      // 260
        ("e", -3.0),      // 261
        ("l", -4.0),      // 262
        ("o", -5.0),      // 263
        ("w", -6.0),      // 264
        ("r", -7.0),      // 265
        ("d", -8.0),      // 266
        ("ll", -0.5),     // 267
        ("▁h", -0.6),     // 268
        ("▁he", -0.7),    // 269
        ("llo", -0.8),    // 270
        ("▁hello", -0.9), // 271
        ("▁w", -1.0),     // 272
        ("or", -1.1),     // 273
        ("ld", -1.2),     // 274
        ("▁wor", -1.3),   // 275
    ];
    for (p, s) in pieces {
        tokens.push(p.into());
        types.push(TokenType::Normal);
        scores.push(s);
    }
    Vocab {
        model: "llama".into(),
        tokens,
        token_types: types,
        scores,
        bos: Some(1),
        eos: Some(2),
        unk: Some(0),
        ..Vocab::default()
    }
}

#[test]
fn spm_merges_by_score_with_byte_fallback() {
    let t = Tokenizer::from_vocab(spm_vocab()).unwrap();
    assert!(t.add_bos() && !t.add_eos());
    // ▁hello▁world: ll, ▁h, ▁he, llo, ▁hello, ▁w, or, ld, ▁wor; "▁world" is no token
    assert_eq!(t.encode("hello world", true, false).unwrap(), [1, 271, 275, 274]);
    assert_eq!(t.encode("hello world", false, false).unwrap(), [271, 275, 274]);
    // é is no token: its UTF-8 bytes C3 A9 as <0xC3> <0xA9>
    assert_eq!(t.encode("hé", false, false).unwrap(), [268, 3 + 0xC3, 3 + 0xA9]);
    // equal scores: the leftmost pair merges first
    assert_eq!(t.encode("lll", false, false).unwrap(), [259, 267, 262]);
    // a special token, then the space prefix again before the following text
    assert_eq!(t.encode("<s>hi", false, true).unwrap(), [1, 268, 3 + b'i' as u32]);
    assert_eq!(t.encode("", false, false).unwrap(), Vec::<u32>::new());
    assert_eq!(t.encode("", true, false).unwrap(), [1]);
    assert_eq!(t.decode(&[271, 275, 274]), "hello world");
    assert_eq!(t.decode(&[268, 3 + 0xC3, 3 + 0xA9]), "hé");
    assert_eq!(t.decode(&[1, 271]), "<s> hello");
    assert!(t.is_eog(2) && !t.is_eog(1));
}

#[test]
fn spm_without_space_prefix() {
    let mut v = spm_vocab();
    v.add_space_prefix = Some(false);
    let t = Tokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode("hello", false, false).unwrap(), [260, 261, 270]);
    assert_eq!(t.encode(" hello", false, false).unwrap(), [271]);
    assert_eq!(t.decode(&[271]), " hello");
}

/// Byte-level BPE vocabulary: token id b is byte b's GPT-2 character, then merges.
fn bpe_vocab() -> Vocab {
    let mut tokens: Vec<String> =
        (0..=255u8).map(|b| unicode::byte_to_char(b).to_string()).collect();
    let mut types = vec![TokenType::Normal; 256];
    for (t, ty) in [
        ("Ġt", TokenType::Normal),             // 256
        ("he", TokenType::Normal),             // 257
        ("Ġthe", TokenType::Normal),           // 258
        ("in", TokenType::Normal),             // 259
        ("<|endoftext|>", TokenType::Control), // 260
        ("<|im_start|>", TokenType::Control),  // 261
        ("<tool>", TokenType::UserDefined),    // 262
        ("aa", TokenType::Normal),             // 263
    ] {
        tokens.push(t.into());
        types.push(ty);
    }
    Vocab {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens,
        token_types: types,
        merges: ["Ġ t", "h e", "Ġt he", "i n", "a a"].map(String::from).to_vec(),
        bos: Some(260),
        eos: Some(260),
        ..Vocab::default()
    }
}

#[test]
fn bpe_merges_by_rank() {
    let t = Tokenizer::from_vocab(bpe_vocab()).unwrap();
    assert_eq!(t.n_skipped_merges(), 0);
    // " the": Ġt (rank 0), he (1), Ġthe (2); " in": in (3), "Ġin" is no merge
    assert_eq!(t.encode(" the in", false, false).unwrap(), [258, 32, 259]);
    assert_eq!(t.decode(&[258, 32, 259]), " the in");
    // equal ranks: leftmost first
    assert_eq!(t.encode("aaa", false, false).unwrap(), [263, 97]);
    assert_eq!(t.encode("aaaa", false, false).unwrap(), [263, 263]);
    // bytes of a character with no merges
    assert_eq!(t.encode("é", false, false).unwrap(), [0xC3, 0xA9]);
    assert_eq!(t.decode(&[0xC3, 0xA9]), "é");
    assert_eq!(t.decode(&[0xC3]), "\u{FFFD}");
}

#[test]
fn bpe_special_tokens() {
    let t = Tokenizer::from_vocab(bpe_vocab()).unwrap();
    let text = "<tool>x<|im_start|>";
    assert_eq!(t.encode(text, false, true).unwrap(), [262, 120, 261]);
    // control tokens are plain text without parse_special; user-defined ones are not
    let mut want = vec![262, 120];
    want.extend(b"<|im_start|>".iter().map(|&b| b as u32));
    assert_eq!(t.encode(text, false, false).unwrap(), want);
    // a partial special is text either way
    let partial: Vec<u32> = b"<|im_start".iter().map(|&b| b as u32).collect();
    assert_eq!(t.encode("<|im_start", false, true).unwrap(), partial);
    assert_eq!(t.decode(&[262, 120, 261]), text);
    // gpt-2 BPE adds no BOS by default; the metadata can ask for it
    assert_eq!(t.encode("x", true, false).unwrap(), [120]);
    let mut v = bpe_vocab();
    v.add_bos = Some(true);
    v.add_eos = Some(true);
    let t2 = Tokenizer::from_vocab(v).unwrap();
    assert_eq!(t2.encode("x", true, false).unwrap(), [260, 120, 260]);
    // <|endoftext|> is end-of-generation by its text
    assert!(t.is_eog(260) && !t.is_eog(261));
    assert!(t.is_control(261) && !t.is_control(262));
}

#[test]
fn clean_up_spaces_passes() {
    let mut v = bpe_vocab();
    v.pre = Some("gpt-2".into()); // clean_spaces on, as in llama.cpp
    let t = Tokenizer::from_vocab(v).unwrap();
    let ids = t.encode("a , b ' c 's 'd 're", false, false).unwrap();
    assert_eq!(t.decode(&ids), "a, b'c's 'd're");
    let mut v = bpe_vocab();
    v.pre = Some("qwen2".into()); // off
    let t = Tokenizer::from_vocab(v).unwrap();
    let ids = t.encode("a , b", false, false).unwrap();
    assert_eq!(t.decode(&ids), "a , b");
}

#[test]
fn stream_decoder_holds_partial_characters() {
    let t = Tokenizer::from_vocab(bpe_vocab()).unwrap();
    let mut d = StreamDecoder::new(&t);
    assert_eq!(d.push(258), " the");
    assert_eq!(d.push(0xC3), "");
    assert_eq!(d.push(0xA9), "é");
    // 0xF0 0x9F 0x99 0x82 = 🙂, one byte at a time
    assert_eq!(d.push(0xF0), "");
    assert_eq!(d.push(0x9F), "");
    assert_eq!(d.push(0x99), "");
    assert_eq!(d.push(0x82), "🙂");
    // a byte that can never start a character
    assert_eq!(d.push(0xFF), "\u{FFFD}");
    assert_eq!(d.push(0xE4), "");
    assert_eq!(d.push(261), "\u{FFFD}<|im_start|>");
    assert_eq!(d.push(0xE4), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    let mut d = StreamDecoder::new(&t).skip_control(true);
    assert_eq!(d.push(261), "");
    assert_eq!(d.push(120), "x");
}

#[test]
fn bad_vocabularies_are_errors() {
    let mut v = bpe_vocab();
    v.model = "t5".into();
    assert!(matches!(Tokenizer::from_vocab(v), Err(TokenizerError::UnsupportedModel(_))));
    let mut v = bpe_vocab();
    v.pre = Some("no-such-pre".into());
    assert!(matches!(Tokenizer::from_vocab(v), Err(TokenizerError::UnsupportedPre(_))));
    let mut v = bpe_vocab();
    v.token_types.pop();
    assert!(Tokenizer::from_vocab(v).is_err());
    assert!(Tokenizer::from_vocab(Vocab { model: "gpt2".into(), ..Vocab::default() }).is_err());
    // a merge naming non-tokens is skipped, not fatal
    let mut v = bpe_vocab();
    v.merges.push("x yz".into());
    v.merges.push("nospace".into());
    assert_eq!(Tokenizer::from_vocab(v).unwrap().n_skipped_merges(), 2);
}

#[test]
fn from_gguf_reads_the_metadata() {
    let v = bpe_vocab();
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", MetaValue::String("llama".into()));
    w.add_metadata("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    w.add_metadata("tokenizer.ggml.pre", MetaValue::String("qwen2".into()));
    w.add_metadata("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(v.tokens.clone())));
    let types: Vec<i32> = v
        .token_types
        .iter()
        .map(|t| match t {
            TokenType::Control => 3,
            TokenType::UserDefined => 4,
            _ => 1,
        })
        .collect();
    w.add_metadata("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(types)));
    w.add_metadata("tokenizer.ggml.merges", MetaValue::Array(MetaArray::String(v.merges.clone())));
    w.add_metadata("tokenizer.ggml.bos_token_id", MetaValue::U32(260));
    w.add_metadata("tokenizer.ggml.eos_token_id", MetaValue::U32(260));
    w.add_metadata("tokenizer.ggml.add_bos_token", MetaValue::Bool(true));
    w.add_metadata(
        "tokenizer.chat_template",
        MetaValue::String("{{ bos_token }}{{ messages[0].content }}".into()),
    );
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let t = Tokenizer::from_gguf(&f).unwrap();
    assert_eq!(t.n_vocab(), 264);
    assert_eq!(t.encode(" the", true, false).unwrap(), [260, 258]);
    let ct = ChatTemplate::from_gguf(&f, &t).unwrap().expect("template");
    assert_eq!(ct.render(&[ChatMessage::new("user", "hi")], false).unwrap(), "<|endoftext|>hi");

    // wrong types are errors naming the key
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", MetaValue::U32(2));
    let f = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let e = Tokenizer::from_gguf(&f).err().expect("error").to_string();
    assert!(e.contains("tokenizer.ggml.model"), "{e}");
}

#[test]
fn never_panics_on_odd_text() {
    let t = Tokenizer::from_vocab(bpe_vocab()).unwrap();
    let s = Tokenizer::from_vocab(spm_vocab()).unwrap();
    let texts = [
        "\0\u{1}\u{7f}",
        "\u{10FFFF}\u{FFFD}",
        "   \n\r\n\t ",
        "<|im_start|><|im_start|><|im_",
        "\u{85}\u{a0}\u{3000}x",
        "ab'",
        "'",
        "a\u{0301}\u{0301}",
    ];
    for text in texts {
        for (ps, asp) in [(false, false), (true, true)] {
            let ids = t.encode(text, asp, ps).unwrap();
            let _ = t.decode(&ids);
            let ids = s.encode(text, asp, ps).unwrap();
            let _ = s.decode(&ids);
        }
    }
    // byte-level BPE round-trips any text exactly
    for text in texts {
        assert_eq!(t.decode(&t.encode(text, false, true).unwrap()), text);
    }
    assert_eq!(t.token_to_piece(99_999), b"");
    assert_eq!(t.decode(&[99_999]), "");
}

#[test]
fn llama3_pre_ignores_merges_for_whole_word_tokens() {
    let mut v = bpe_vocab();
    v.merges.retain(|m| m != "Ġt he");
    v.pre = Some("llama-bpe".into());
    let t = Tokenizer::from_vocab(v.clone()).unwrap();
    // " the" is a token: emitted whole though no merge path reaches it; BOS added by default
    assert!(t.add_bos());
    assert_eq!(t.encode(" the", false, false).unwrap(), [258]);
    assert_eq!(t.encode(" the", true, false).unwrap(), [260, 258]);
    v.pre = Some("gpt-2".into());
    let t = Tokenizer::from_vocab(v).unwrap();
    assert_eq!(t.encode(" the", false, false).unwrap(), [256, 257]);
}
