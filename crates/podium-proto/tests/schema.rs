//! The committed JSON Schemas in `proto/schema/` must match the ones generated from the Rust types.
//!
//! When this test fails, the wire types changed: check that the change is intended (clients code against these
//! files), then regenerate them with
//!
//! ```sh
//! PODIUM_BLESS=1 cargo test -p podium-proto --test schema
//! ```
//!
//! and commit the result together with the change (and update `proto/PROTOCOL.md`).

use std::path::{Path, PathBuf};

use serde_json::Value;

const BLESS_VAR: &str = "PODIUM_BLESS";

/// The repository root: this crate lives in `crates/podium-proto`.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The schemas this crate publishes: file name (under `proto/schema/`) and generated schema.
fn schemas() -> Vec<(&'static str, schemars::Schema)> {
    vec![
        ("client-message.schema.json", podium_proto::client_schema()),
        ("server-message.schema.json", podium_proto::server_schema()),
        ("webhook.schema.json", podium_proto::webhook_schema()),
    ]
}

/// The exact text committed for a schema: pretty-printed, with a trailing newline.
fn render(schema: &schemars::Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serialises");
    text.push('\n');
    text
}

fn blessing() -> bool {
    std::env::var(BLESS_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Up to `max` JSON pointers where `a` and `b` differ (object key order does not matter).
fn differences(a: &Value, b: &Value, path: &str, out: &mut Vec<String>, max: usize) {
    if out.len() >= max || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                match y.get(k) {
                    Some(vb) => differences(va, vb, &p, out, max),
                    None if out.len() < max => out.push(format!("{p}: only in the committed file")),
                    None => return,
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                if out.len() >= max {
                    return;
                }
                out.push(format!("{path}/{k}: only in the generated schema"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, &format!("{path}/{i}"), out, max);
            }
        }
        _ => out.push(format!(
            "{}: committed {} but generated {}",
            if path.is_empty() { "/" } else { path },
            brief(a),
            brief(b)
        )),
    }
}

fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 { format!("{}…", s.chars().take(80).collect::<String>()) } else { s }
}

#[test]
fn committed_schemas_match_the_types() {
    let dir = repo_root().join("proto/schema");
    if blessing() {
        std::fs::create_dir_all(&dir).expect("create proto/schema");
        for (name, schema) in schemas() {
            let path = dir.join(name);
            std::fs::write(&path, render(&schema)).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            eprintln!("wrote {}", path.display());
        }
        return;
    }

    let mut failures = Vec::new();
    for (name, schema) in schemas() {
        let path = dir.join(name);
        let shown = format!("proto/schema/{name}");
        let committed = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("{shown}: cannot read it ({e})"));
                continue;
            }
        };
        let committed: Value = match serde_json::from_str(&committed) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{shown}: not valid JSON ({e})"));
                continue;
            }
        };
        let generated = serde_json::to_value(&schema).expect("a schema converts to JSON");
        if committed != generated {
            let mut diffs = Vec::new();
            differences(&committed, &generated, "", &mut diffs, 10);
            failures.push(format!("{shown} differs from the types:\n    {}", diffs.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "\nThe committed JSON Schemas are out of date with crates/podium-proto:\n\n{}\n\n\
         If the protocol change is intended, regenerate them and commit the result:\n\n    \
         {BLESS_VAR}=1 cargo test -p podium-proto --test schema\n\n\
         and update proto/PROTOCOL.md to match.\n",
        failures.join("\n\n"),
    );
}

#[test]
fn schemas_are_2020_12_and_name_their_root() {
    for (name, schema) in schemas() {
        let v = serde_json::to_value(&schema).expect("a schema converts to JSON");
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        assert!(v["title"].is_string(), "{name} has no title");
        assert!(v["oneOf"].as_array().is_some_and(|a| !a.is_empty()), "{name}: no message variants");
    }
}
