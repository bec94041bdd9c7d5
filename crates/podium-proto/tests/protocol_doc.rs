//! `proto/PROTOCOL.md` must document the whole protocol, and its examples must be real messages.
//!
//! - Every error code has a row in the error code table, and every close code (number and reason) one in the close
//!   code table.
//! - Every request kind has a `### `kind`` section that mentions each of its fields and shows it in an example.
//! - Every hub message type has a section whose field table matches the schema, with an example; likewise the
//!   object tables and the `StageCause` kinds.
//! - Every ```json block is a sequence of messages: each one deserialises into the Rust types, serialises back to
//!   exactly the same JSON, and validates against the generated JSON Schema. Replies in a block answer a request
//!   in that block, with the result shape that request has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use podium_proto::{ClientMessage, CloseCode, ErrorCode, Reply, Request, RequestId, ServerMessage};
use serde_json::Value;

const DOC: &str = "proto/PROTOCOL.md";

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(DOC);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn schema_value(schema: schemars::Schema) -> Value {
    serde_json::to_value(schema).expect("a schema converts to JSON")
}

/// The text under the heading line `heading` (exact), up to the next heading of the same or a higher level.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut start = None;
    let mut offset = 0;
    for line in doc.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(s) = start {
            let hashes = trimmed.chars().take_while(|c| *c == '#').count();
            if hashes > 0 && hashes <= level && trimmed[hashes..].starts_with(' ') {
                return &doc[s..offset];
            }
        } else if trimmed == heading {
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    match start {
        Some(s) => &doc[s..],
        None => panic!("{DOC} has no heading `{heading}`"),
    }
}

/// The backticked names in the first column of a section's tables (`| `name` | ...`), before any subsection.
fn table_names(section: &str) -> BTreeSet<String> {
    let own = section.split("\n### ").next().unwrap_or(section);
    own.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The backticked words in a string.
fn backticked(s: &str) -> BTreeSet<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The property names of a schema object (without the tag), following one `$ref` into `$defs`.
fn properties(variant: &Value, defs: &Value, tag: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> =
        variant["properties"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    if let Some(r) = variant["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        names.extend(properties(&defs[name], defs, tag));
    }
    names.remove(tag);
    names
}

/// The tagged variants of a schema's `oneOf`: tag value → variant schema.
fn variants(schema: &Value, tag: &str) -> BTreeMap<String, Value> {
    schema["oneOf"]
        .as_array()
        .expect("a oneOf")
        .iter()
        .map(|v| (v["properties"][tag]["const"].as_str().expect("a const tag").to_owned(), v.clone()))
        .collect()
}

#[test]
fn every_error_code_has_a_row() {
    let doc = doc();
    let table = section(&doc, "## Error codes");
    let documented = table_names(table);
    let missing: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).filter(|c| !documented.contains(*c)).collect();
    assert!(missing.is_empty(), "{DOC}: the error code table lacks {missing:?}");
    let known: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let stale: Vec<&String> = documented.iter().filter(|c| !known.contains(c.as_str())).collect();
    assert!(stale.is_empty(), "{DOC}: the error code table lists unknown codes {stale:?}");
}

#[test]
fn every_close_code_has_a_row() {
    let doc = doc();
    let table = section(&doc, "## Close codes");
    for code in CloseCode::ALL {
        let row = format!("| {} | `{}` |", code.code(), code.reason());
        assert!(table.contains(&row), "{DOC}: the close code table lacks a row starting `{row}`");
    }
    let rows = table.lines().filter(|l| l.starts_with("| 1") || l.starts_with("| 4")).count();
    assert_eq!(rows, CloseCode::ALL.len(), "{DOC}: the close code table has rows for unknown codes");
}

#[test]
fn every_request_kind_has_a_section_naming_its_fields() {
    let doc = doc();
    let client = schema_value(podium_proto::client_schema());
    let defs = &client["$defs"];
    let requests = variants(&client, "type");
    let kinds: BTreeSet<&str> = Request::KINDS.iter().copied().collect();
    assert_eq!(
        kinds,
        requests.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        "Request::KINDS and the client schema disagree"
    );
    for kind in Request::KINDS {
        let heading = format!("### `{kind}`");
        assert!(doc.lines().any(|l| l == heading), "{DOC} lacks the heading {heading}");
        let text = section(&doc, &heading);
        for field in properties(&requests[*kind], defs, "type") {
            assert!(text.contains(&format!("`{field}`")), "{DOC}, {heading}: field `{field}` is not described");
        }
    }
    let listed = section(&doc, "## Requests");
    for heading in listed.lines().filter_map(|l| l.strip_prefix("### `")) {
        let kind = heading.trim_end_matches('`');
        assert!(kinds.contains(kind), "{DOC} documents a request `{kind}` that does not exist");
    }
}

#[test]
fn every_server_message_has_a_section_with_its_fields() {
    let doc = doc();
    let server = schema_value(podium_proto::server_schema());
    let defs = &server["$defs"];
    for (ty, variant) in variants(&server, "type") {
        let heading = format!("### `{ty}`");
        assert!(doc.lines().any(|l| l == heading), "{DOC} lacks the heading {heading}");
        let documented = table_names(section(&doc, &heading));
        let actual = properties(&variant, defs, "type");
        assert_eq!(documented, actual, "{DOC}, {heading}: the field table does not match the schema");
    }
}

#[test]
fn every_object_table_matches_the_schema() {
    let doc = doc();
    let server = schema_value(podium_proto::server_schema());
    let defs = &server["$defs"];
    let objects = [
        ("Participant", "Participant"),
        ("StageMember", "StageMember"),
        ("Counts", "Counts"),
        ("HandQueue", "HandQueue"),
        ("YourState", "YourState"),
        ("Invite", "Invite"),
        ("RoomSettings", "RoomSettings"),
        ("RoomInfo", "RoomInfo"),
        ("PinnedLink", "PinnedLink"),
        ("ChatMessage", "ChatMessage"),
        ("ChatPage", "ChatPage"),
        ("ReactionsInfo", "ReactionsInfo"),
        ("RecordingState", "RecordingState"),
        ("RoomSnapshot", "RoomSnapshot"),
        ("Welcome", "Welcome"),
        ("Limits object", "Limits"),
        ("IceServers", "IceServers"),
        ("IceServer", "IceServer"),
        ("AudiencePage", "AudiencePage"),
        ("AudienceEntry", "AudienceEntry"),
        ("MediaTrack", "MediaTrack"),
        ("Speaking", "Speaking"),
        ("ScheduledSlot", "ScheduledSlot"),
        ("ScheduledPerson", "ScheduledPerson"),
        ("`schedule`", "ScheduleView"),
    ];
    for (heading, def) in objects {
        let heading = format!("### {heading}");
        let documented = table_names(section(&doc, &heading));
        let actual = properties(&defs[def], defs, "");
        assert_eq!(documented, actual, "{DOC}, {heading}: the field table does not match $defs/{def}");
    }
    let object_defs: BTreeSet<&str> = defs
        .as_object()
        .expect("$defs")
        .iter()
        .filter(|(_, d)| d["type"] == "object")
        .map(|(k, _)| k.as_str())
        .collect();
    let covered: BTreeSet<&str> = objects.iter().map(|(_, d)| *d).collect();
    let missing: Vec<&&str> = object_defs.difference(&covered).collect();
    assert!(missing.is_empty(), "{DOC} has no object table for {missing:?}");
}

#[test]
fn every_stage_cause_kind_has_a_row_with_its_fields() {
    let doc = doc();
    let server = schema_value(podium_proto::server_schema());
    let causes = variants(&server["$defs"]["StageCause"], "kind");
    let table = section(&doc, "### StageCause kinds");
    for (kind, variant) in &causes {
        let prefix = format!("| `{kind}` |");
        let row = table.lines().find(|l| l.starts_with(&prefix));
        let row = row.unwrap_or_else(|| panic!("{DOC}: the StageCause table lacks `{kind}`"));
        let fields_cell = row.split('|').nth(2).unwrap_or_default();
        let documented = backticked(fields_cell);
        let actual = properties(variant, &Value::Null, "kind");
        assert_eq!(documented, actual, "{DOC}: StageCause `{kind}` lists the wrong fields");
    }
    assert_eq!(table_names(table).len(), causes.len(), "{DOC}: the StageCause table has unknown kinds");
}

/// One ```json block of the document, with the headings it sits under.
struct Block {
    line: usize,
    heading: String,
    text: String,
}

fn json_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut current: Option<Block> = None;
    let mut in_other_fence = false;
    for (i, line) in doc.lines().enumerate() {
        if current.is_none() && (in_other_fence || (line.starts_with("```") && line != "```json")) {
            // Inside some other code block: skip it whole (its lines are neither headings nor examples).
            in_other_fence = if in_other_fence { line != "```" } else { true };
            continue;
        }
        match &mut current {
            Some(block) if line == "```" => {
                blocks.push(std::mem::replace(block, Block { line: 0, heading: String::new(), text: String::new() }));
                current = None;
            }
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if line == "```json" => {
                current = Some(Block { line: i + 1, heading: heading.clone(), text: String::new() });
            }
            None if line.starts_with('#') => heading = line.to_owned(),
            None => {}
        }
    }
    assert!(current.is_none(), "{DOC}: unterminated code block");
    blocks
}

/// The result a successful request of this kind carries: `None` for none, else the `Reply` variant's name.
fn expected_result(kind: &str) -> Option<&'static str> {
    match kind {
        "join" => Some("Welcome"),
        "get_state" => Some("State"),
        "list_audience" => Some("Audience"),
        "raise_hand" => Some("Hand"),
        "media_offer" => Some("Answer"),
        "send_chat" => Some("ChatSent"),
        "chat_history" => Some("Chat"),
        _ => None,
    }
}

fn result_name(result: Option<&Reply>) -> Option<&'static str> {
    result.map(|r| match r {
        Reply::Welcome(_) => "Welcome",
        Reply::State(_) => "State",
        Reply::Audience(_) => "Audience",
        Reply::Hand { .. } => "Hand",
        Reply::Answer { .. } => "Answer",
        Reply::ChatSent { .. } => "ChatSent",
        Reply::Chat(_) => "Chat",
    })
}

#[test]
fn every_example_is_a_valid_message() {
    let doc = doc();
    let client_schema = schema_value(podium_proto::client_schema());
    let server_schema = schema_value(podium_proto::server_schema());
    let client_validator = jsonschema::validator_for(&client_schema).expect("the client schema compiles");
    let server_validator = jsonschema::validator_for(&server_schema).expect("the server schema compiles");
    let server_types: BTreeSet<String> = variants(&server_schema, "type").into_keys().collect();

    let mut failures = Vec::new();
    // heading → message types shown under it
    let mut shown: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let blocks = json_blocks(&doc);
    assert!(blocks.len() > 40, "{DOC}: expected many ```json examples, found {}", blocks.len());

    for block in &blocks {
        let at = format!("{DOC}:{} (under `{}`)", block.line, block.heading);
        let mut requests: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut n = 0;
        for value in serde_json::Deserializer::from_str(&block.text).into_iter::<Value>() {
            n += 1;
            let value = match value {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{at}: not JSON: {e}"));
                    break;
                }
            };
            let Some(ty) = value["type"].as_str().map(str::to_owned) else {
                failures.push(format!("{at}: a message without a string `type`: {value}"));
                continue;
            };
            shown.entry(block.heading.clone()).or_default().insert(ty.clone());

            // A request always has an `id`; an event never does (`media_offer` is both).
            let request_kind = Request::KINDS.iter().find(|k| **k == ty).filter(|_| value.get("id").is_some());
            if let Some(kind) = request_kind {
                if let Err(e) = client_validator.validate(&value) {
                    failures.push(format!("{at}: `{ty}` fails the client schema: {e}"));
                }
                match serde_json::from_value::<ClientMessage>(value.clone()) {
                    Ok(m) => {
                        let back = serde_json::to_value(&m).expect("serialises");
                        if back != value {
                            failures
                                .push(format!("{at}: `{ty}` does not round-trip:\n  doc:  {value}\n  wire: {back}"));
                        }
                        requests.insert(serde_json::to_string(&m.id).expect("serialises"), kind);
                    }
                    Err(e) => failures.push(format!("{at}: `{ty}` is not a ClientMessage: {e}")),
                }
            } else if server_types.contains(&ty) {
                if let Err(e) = server_validator.validate(&value) {
                    failures.push(format!("{at}: `{ty}` fails the server schema: {e}"));
                }
                let message = match serde_json::from_value::<ServerMessage>(value.clone()) {
                    Ok(m) => m,
                    Err(e) => {
                        failures.push(format!("{at}: `{ty}` is not a ServerMessage: {e}"));
                        continue;
                    }
                };
                let back = serde_json::to_value(&message).expect("serialises");
                if back != value {
                    failures.push(format!("{at}: `{ty}` does not round-trip:\n  doc:  {value}\n  wire: {back}"));
                }
                check_reply(&message, &requests, &block.heading, &doc, &at, &mut failures);
            } else {
                failures.push(format!("{at}: unknown message type `{ty}`"));
            }
        }
        if n == 0 {
            failures.push(format!("{at}: empty example"));
        }
    }

    // Every request and message section shows its own message.
    let mut headings: Vec<String> = Request::KINDS.iter().map(|k| (*k).to_owned()).collect();
    headings.extend(server_types.iter().cloned());
    for ty in headings {
        let heading = format!("### `{ty}`");
        if !shown.get(&heading).is_some_and(|types| types.contains(&ty)) {
            failures.push(format!("{DOC}, {heading}: no example of `{ty}`"));
        }
    }

    assert!(failures.is_empty(), "\n{} problem(s) with the examples:\n\n{}\n", failures.len(), failures.join("\n\n"));
}

/// A reply in a block that has requests must answer one of them, with the right result shape; an error under a
/// request's heading must use a code that section documents.
fn check_reply(
    message: &ServerMessage,
    requests: &BTreeMap<String, &'static str>,
    heading: &str,
    doc: &str,
    at: &str,
    failures: &mut Vec<String>,
) {
    let (id, result, code) = match message {
        ServerMessage::Ok { id, result } => (Some(id), Some(result.as_ref()), None),
        ServerMessage::Error { id, code, .. } => (id.as_ref(), None, Some(*code)),
        _ => return,
    };
    if requests.is_empty() {
        return;
    }
    let Some(id) = id else { return };
    let key = serde_json::to_string::<RequestId>(id).expect("serialises");
    let Some(kind) = requests.get(&key) else {
        failures.push(format!("{at}: a reply with id {key} answers no request in its block"));
        return;
    };
    if let Some(result) = result {
        let (want, got) = (expected_result(kind), result_name(result));
        if want != got {
            failures.push(format!("{at}: `ok` to `{kind}` should carry {want:?}, carries {got:?}"));
        }
    }
    if let Some(code) = code
        && heading == format!("### `{kind}`")
        && !section(doc, heading).contains(&format!("`{}`", code.as_str()))
    {
        failures.push(format!("{at}: `{kind}` answered with `{}`, which its section does not list", code.as_str()));
    }
}
