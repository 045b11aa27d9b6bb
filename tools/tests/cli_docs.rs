//! `weft run --doc`: parallel encoding from the command line, its JSON observer output, the
//! on-disk document cache, and clear errors for bad documents.

use std::path::PathBuf;
use std::process::{Command, Output};

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("weft-cli-docs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_docs(docs: &[&PathBuf], extra: &[&str]) -> Output {
    let mut c = weft();
    c.args(["run", "-p", "How deep is Lake Baikal?", "-n", "4", "--temp", "0", "-t", "2"]);
    c.arg("--doc").args(docs);
    c.args(extra);
    c.output().unwrap()
}

#[test]
fn run_with_documents_writes_entropy_and_reuses_the_disk_cache() {
    let dir = TestDir::new("ok");
    let a = dir.file(
        "a.txt",
        b"Lake Baikal in Siberia is the deepest lake in the world, reaching 1,642 metres.\n",
    );
    let b = dir
        .file("b.txt", b"Saffron is a spice made from the dried stigmas of the crocus flower.\n");
    let json = dir.0.join("entropy.json");
    let cache = dir.0.join("cache");
    let extra = [
        "--select",
        "1",
        "--entropy-out",
        json.to_str().unwrap(),
        "--doc-cache",
        cache.to_str().unwrap(),
    ];
    let o = run_docs(&[&a, &b], &extra);
    let err = text(&o.stderr);
    assert!(o.status.success(), "stderr: {err}");
    assert!(err.contains("2 documents") && err.contains("select 1 (pool heads+tokens)"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let layers = v["entropy_by_layer"].as_array().unwrap();
    assert_eq!(layers.len(), 30, "SmolLM2 has 30 layers");
    assert!(layers.iter().all(|h| h.as_f64().unwrap() > 0.0));
    assert!(v["n_query_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["kept_fraction_by_layer_piece"][0].as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3, "one file per document and the sink");
    // A second run finds both documents on disk.
    let o = run_docs(&[&a, &b], &extra);
    let err = text(&o.stderr);
    assert!(o.status.success(), "stderr: {err}");
    assert!(!err.contains(" 0 from the document cache"), "{err}");
    assert!(err.contains("3 on disk"), "{err}");
    // A damaged file is reported and recomputed.
    let victim = std::fs::read_dir(&cache).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let o = run_docs(&[&a, &b], &extra);
    let err = text(&o.stderr);
    assert!(o.status.success(), "stderr: {err}");
    assert!(err.contains("1 damaged document-cache file"), "{err}");
}

#[test]
fn bad_documents_are_clear_errors() {
    let dir = TestDir::new("bad");
    let good = dir.file("good.txt", b"Some text.\n");
    let empty = dir.file("empty.txt", b"  \n\n");
    let binary = dir.file("bin.txt", &[0x66, 0x6f, 0xff, 0xfe, 0x00]);
    let missing = dir.0.join("missing.txt");
    for (doc, want) in
        [(&empty, "the document is empty"), (&binary, "not UTF-8"), (&missing, "reading")]
    {
        let o = run_docs(&[&good, doc], &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{doc:?}: {err}");
        assert!(err.contains("error: ") && err.contains(want), "{doc:?}: {err}");
        assert!(!err.contains("panicked"), "{doc:?}: {err}");
    }
    // A context too small for the documents is an error, not a crash.
    let o = run_docs(&[&good, &good], &["-c", "16"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("KV cells"), "{err}");
}

#[test]
fn bench_parallel_runs_on_a_small_setting() {
    let o = weft()
        .args(["bench-parallel", "-m", "smollm2-135m", "-c", "256", "--pieces", "1,4"])
        .args(["-r", "1", "--cache-docs", "2", "--cache-len", "32", "-t", "2"])
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    for want in ["| 1 |", "| 4 |", "cache hit", "K = 2"] {
        assert!(out.contains(want), "missing {want}: {out}");
    }
    let o = weft().args(["bench-parallel", "-c", "64", "--pieces", "40"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "bad --pieces: {}", text(&o.stderr));
}

#[test]
fn chat_keeps_documents_across_turns() {
    use std::io::Write;
    let dir = TestDir::new("chat");
    let a = dir.file("a.txt", b"Lake Baikal is the deepest lake in the world.\n");
    let b = dir.file("b.txt", b"Saffron is a spice made from crocus flowers.\n");
    let mut child = weft()
        .args(["chat", "-n", "4", "--temp", "0", "-t", "2", "--doc"])
        .args([&a, &b])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = "/docs\nWhich lake is deepest?\nAnd the spice?\n/quit\n";
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    // /docs lists both documents with token counts (once at start, once asked).
    assert_eq!(err.matches("a.txt (").count(), 2, "{err}");
    assert!(err.contains("b.txt (") && err.contains(" tokens)"), "{err}");
    // The second turn re-uses the encoded documents and encodes only the conversation.
    let turns: Vec<&str> = err.lines().filter(|l| l.contains("weft: documents:")).collect();
    assert_eq!(turns.len(), 2, "{err}");
    assert!(turns[0].contains(" 0 kept from the last request"), "{}", turns[0]);
    assert!(turns[1].starts_with("weft: documents: 0 tokens encoded"), "{}", turns[1]);
    assert!(!turns[1].contains(" 0 kept from the last request"), "{}", turns[1]);
}
