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

/// Every `curl` example in `proto/ADMIN.md` is an operation of the document, and every operation of the document
/// has an example there.
#[test]
fn admin_md_examples_match_the_document() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let doc: serde_json::Value = serde_json::from_str(&podium_hub::openapi_json()).expect("the document is JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let text = std::fs::read_to_string(root.join("proto/ADMIN.md")).expect("proto/ADMIN.md");
    // Join continued lines, then take each curl command's method and path.
    let joined = text.replace("\\\n", " ");
    let mut used = std::collections::HashSet::new();
    let mut examples = 0;
    for line in joined.lines().map(str::trim).filter(|l| l.starts_with("curl ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let method = words.windows(2).find(|w| w[0] == "-X").map_or("GET", |w| w[1]).to_ascii_lowercase();
        let url = words
            .iter()
            .map(|w| w.trim_matches('"'))
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line}"));
        let path = url.split_once("7880").map_or(url, |(_, p)| p);
        let path = path.split('?').next().unwrap_or(path);
        let matched = paths.iter().find(|(template, ops)| {
            ops.get(&method).is_some() && {
                let t: Vec<&str> = template.split('/').collect();
                let p: Vec<&str> = path.split('/').collect();
                t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
            }
        });
        let (template, _) = matched.unwrap_or_else(|| panic!("ADMIN.md: `{method} {path}` is not in the document"));
        used.insert((method, template.clone()));
        examples += 1;
    }
    assert!(examples >= 10, "ADMIN.md has curl examples");
    for (template, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            if template.ends_with("openapi.json") {
                continue;
            }
            assert!(
                used.contains(&(method.clone(), template.clone())),
                "ADMIN.md has no example of `{method} {template}`"
            );
        }
    }
}
