//! Any byte string given to the GGUF reader yields Ok or Err: never a panic, abort, hang or an
//! allocation the input does not justify (libFuzzer's -rss_limit_mb / -malloc_limit_mb catch
//! those). On success, every accessor and tensor view is exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::gguf::{GgufFile, MetaValue};

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else { return };
    assert!(matches!(f.version(), 2 | 3));
    assert!(f.alignment().is_power_of_two());
    assert_eq!(f.data_offset() % f.alignment(), 0);
    let _ = f.architecture();
    for (key, value) in f.metadata() {
        // the same entry (compared by address: a NaN value is not equal to itself)
        assert!(f.get(key).is_some_and(|v| std::ptr::eq(v, value)));
        let _ = value.to_string();
        let _ = (f.u32(key), f.u64(key), f.f32(key), f.bool(key), f.str(key));
        let _ = (f.u32_opt(key), f.f32_opt(key), f.bool_opt(key), f.str_opt(key));
        let _ = (f.str_array(key), f.f32_array(key), f.i32_array(key), f.array(key));
        if let MetaValue::Array(a) = value {
            let _ = a.len();
        }
    }
    let _ = f.u32("{arch}.block_count");
    let mut total = 0u64;
    for (i, t) in f.tensors().iter().enumerate() {
        let v = f.tensor_at(i).expect("index in range");
        assert_eq!(v.data.len() as u64, t.n_bytes);
        assert_eq!(v.cols() * v.rows(), v.n_elements());
        assert_eq!(f.tensor(&t.name).map(|v| v.data.as_ptr()), Some(v.data.as_ptr()));
        assert!(f.data_offset() + t.offset + t.n_bytes <= f.file_size());
        total += t.n_bytes;
    }
    assert!(total <= f.file_size());
});
