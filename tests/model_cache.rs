//! The default models as the other tests find them: present (fetched if missing) and exactly
//! the bytes the manifest pins.

use weft::manifest::verify_model;
use weft_tests::{manifest, model_file_name, model_path};

#[test]
fn default_models_are_cached_and_verified() {
    for e in &manifest().models {
        let Some(p) = model_path(&e.name) else { continue };
        assert_eq!(p.file_name().and_then(|f| f.to_str()), model_file_name(&e.name));
        verify_model(e, &p, &mut |_| {}).unwrap_or_else(|err| panic!("{}: {err}", e.name));
    }
}
