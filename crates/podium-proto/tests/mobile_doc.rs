//! `proto/MOBILE.md`, the guide for native clients, shows exact messages: every ```json block is a sequence of
//! messages that deserialise into the protocol's types, serialise back to the same JSON, and validate against the
//! generated JSON Schemas.

use std::path::Path;

use podium_proto::{ClientMessage, Request, ServerMessage};
use serde_json::Value;

const DOC: &str = "proto/MOBILE.md";

#[test]
fn every_example_in_the_mobile_guide_is_a_valid_message() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(DOC);
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let client_schema = serde_json::to_value(podium_proto::client_schema()).expect("schema");
    let server_schema = serde_json::to_value(podium_proto::server_schema()).expect("schema");
    let client = jsonschema::validator_for(&client_schema).expect("the client schema compiles");
    let server = jsonschema::validator_for(&server_schema).expect("the server schema compiles");

    let mut blocks: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut current {
            Some(_) if line == "```" => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None if line == "```json" => current = Some((i + 1, String::new())),
            None => {}
        }
    }
    assert!(current.is_none(), "{DOC}: unterminated code block");
    assert!(blocks.len() >= 10, "{DOC}: expected the sequence's examples, found {} blocks", blocks.len());

    let mut failures = Vec::new();
    let mut messages = 0;
    for (line, text) in &blocks {
        for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{DOC}:{line}: not JSON: {e}"));
                    break;
                }
            };
            messages += 1;
            let ty = value["type"].as_str().unwrap_or_default().to_owned();
            let is_request = Request::KINDS.contains(&ty.as_str()) && value.get("id").is_some();
            let (valid, back) = if is_request {
                (client.validate(&value).map_err(|e| e.to_string()), {
                    serde_json::from_value::<ClientMessage>(value.clone())
                        .map(|m| serde_json::to_value(&m).expect("serialises"))
                        .map_err(|e| e.to_string())
                })
            } else {
                (server.validate(&value).map_err(|e| e.to_string()), {
                    serde_json::from_value::<ServerMessage>(value.clone())
                        .map(|m| serde_json::to_value(&m).expect("serialises"))
                        .map_err(|e| e.to_string())
                })
            };
            if let Err(e) = valid {
                failures.push(format!("{DOC}:{line}: `{ty}` fails the schema: {e}"));
            }
            match back {
                Ok(back) if back != value => {
                    failures.push(format!("{DOC}:{line}: `{ty}` does not round-trip:\n  doc:  {value}\n  wire: {back}"))
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{DOC}:{line}: `{ty}` is not a protocol message: {e}")),
            }
        }
    }
    assert!(messages >= 20, "{DOC}: only {messages} messages");
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n\n"));
}
