//! The committed OpenAPI document (`proto/openapi.json`) is the one the admin API's code generates. After changing
//! the API, regenerate it with:
//!
//! PODIUM_BLESS=1 cargo test -p podium-hub --test openapi

use std::path::PathBuf;

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi.json");
    let generated = podium_hub::openapi_json();
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("the document is JSON");
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true), "OpenAPI 3.1");
    if std::env::var("PODIUM_BLESS").is_ok_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "proto/openapi.json is not what the code generates; regenerate it:\n\n\
         PODIUM_BLESS=1 cargo test -p podium-hub --test openapi\n"
    );
}
