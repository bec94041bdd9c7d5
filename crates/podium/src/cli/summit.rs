//! `podium summit`: summits through the admin API: list them, import a schedule (pretalx/frab or Podium JSON),
//! release it and roll back, watch each stage run, act on a stage (start, end, extend, cancel, check in) and print
//! the iCalendar feed. Times are printed in UTC.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Api, Client, EXIT_USAGE, Failure, Table, text};

#[derive(Args)]
pub(crate) struct Summit {
    #[command(flatten)]
    api: Api,
    #[command(subcommand)]
    command: SummitCommand,
}

#[derive(Subcommand)]
enum SummitCommand {
    /// Every summit: title, time zone, latest release, the hub running it (scope read).
    List,
    /// Replace a summit's work-in-progress schedule with a file (scope admin); creates the summit. Prints the counts
    /// and what a release would warn about. Nothing runs until `podium summit release`.
    Import {
        /// The summit's id.
        summit: String,
        /// A pretalx/frab `schedule.json` or a Podium JSON schedule (`podium summit export`); `-` reads stdin.
        file: PathBuf,
        /// The file's format (default: `podium` when its top-level `format` is `podium-schedule`, `frab` when it has
        /// a top-level `schedule`).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// frab: the time zone when the file has none (default UTC).
        #[arg(long, value_name = "ZONE")]
        time_zone: Option<String>,
        /// frab: the prefix of the imported people's identities (default `pretalx-`).
        #[arg(long, value_name = "PREFIX")]
        person_prefix: Option<String>,
        /// Write only if the schedule is at this version (`podium summit list`); 0: only if the summit is new.
        #[arg(long, value_name = "VERSION")]
        expect_version: Option<u64>,
    },
    /// Print a summit's work-in-progress schedule as Podium JSON (scope read): edit it and import it again.
    Export {
        /// The summit's id.
        summit: String,
    },
    /// Release the work in progress (scope admin): prints the release number, what changed from the previous
    /// release and the warnings. Refused (exit 1, `conflict`) when slots overlap on a stage.
    Release {
        /// The summit's id.
        summit: String,
        /// Name (default `v<number>`).
        #[arg(long)]
        name: Option<String>,
        /// Public changelog comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Every release, oldest first (scope read).
    Releases {
        /// The summit's id.
        summit: String,
    },
    /// Release an earlier release's schedule again, as a new number (scope admin).
    Rollback {
        /// The summit's id.
        summit: String,
        /// The release to go back to.
        seq: u64,
        /// Name (default `rollback to <seq>`).
        #[arg(long)]
        name: Option<String>,
        /// Public changelog comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Each stage as it runs (scope read): the active slot and the next ones, check-ins, pending outputs, and the
    /// hub running the summit. Times in UTC.
    Status {
        /// The summit's id.
        summit: String,
        /// How many waiting slots to show per stage.
        #[arg(long, default_value_t = 5, value_name = "N")]
        next: usize,
        /// Every slot, completed and canceled ones too.
        #[arg(long)]
        all: bool,
    },
    /// A runtime action on a stage (scope moderate), done by the hub running the summit.
    Action {
        /// The summit's id.
        summit: String,
        /// The stage's id.
        stage: String,
        #[command(subcommand)]
        action: ActionCommand,
    },
    /// The latest release as iCalendar (scope read): the whole summit, one stage, one person's sessions, or the
    /// slots a subscriber follows.
    Calendar {
        /// The summit's id.
        summit: String,
        /// Only this stage's slots.
        #[arg(long, conflicts_with_all = ["person", "subscriber"])]
        stage: Option<String>,
        /// Only the slots of sessions naming this person.
        #[arg(long, conflicts_with = "subscriber")]
        person: Option<String>,
        /// Only the slots this subscriber follows.
        #[arg(long)]
        subscriber: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// A pretalx or frab `schedule.json`: POST .../import.
    Frab,
    /// Podium's JSON (`{"format": "podium-schedule", ...}`): PUT .../schedule.
    Podium,
}

#[derive(Subcommand)]
enum ActionCommand {
    /// Start the next slot now (ending the running one).
    Start,
    /// End the running slot now.
    End,
    /// Extend the running slot (the stage's overrun policy applies).
    Extend {
        /// 1 to 1440.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=1440))]
        minutes: u32,
    },
    /// Cancel a slot, waiting or running.
    Cancel {
        /// The slot's GUID.
        slot: String,
    },
    /// Check a person in for their slot or shift (as joining the backstage does).
    CheckIn {
        /// The person's identity.
        person: String,
    },
}

impl Summit {
    pub(crate) fn run(self) -> Result<(), Failure> {
        let client = Client::new(&self.api)?;
        match self.command {
            SummitCommand::List => list(&client),
            SummitCommand::Import { summit, file, format, time_zone, person_prefix, expect_version } => {
                let options = ImportArgs { format, time_zone, person_prefix, expect_version };
                import(&client, &summit, &file, options)
            }
            SummitCommand::Export { summit } => {
                let answer = client.get(&["summits", &summit, "schedule"], &[])?;
                println!("{}", answer.text.trim_end());
                Ok(())
            }
            SummitCommand::Release { summit, name, comment } => {
                let answer =
                    client.call(Method::POST, &["summits", &summit, "releases"], &[], Some(&named(name, comment)))?;
                print_release(&client, &summit, &answer.text, &answer.json()?)
            }
            SummitCommand::Releases { summit } => releases(&client, &summit),
            SummitCommand::Rollback { summit, seq, name, comment } => {
                let seq = seq.to_string();
                let segments = ["summits", &summit, "releases", &seq, "rollback"];
                let answer = client.call(Method::POST, &segments, &[], Some(&named(name, comment)))?;
                print_release(&client, &summit, &answer.text, &answer.json()?)
            }
            SummitCommand::Status { summit, next, all } => status(&client, &summit, next, all),
            SummitCommand::Action { summit, stage, action } => act(&client, &summit, &stage, action),
            SummitCommand::Calendar { summit, stage, person, subscriber } => {
                let query: Vec<(&str, String)> = [("stage", stage), ("person", person), ("subscriber", subscriber)]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
                let answer = client.get(&["summits", &summit, "calendar.ics"], &query)?;
                print!("{}", answer.text);
                Ok(())
            }
        }
    }
}

/// `{"name"?, "comment"?}`.
fn named(name: Option<String>, comment: Option<String>) -> Value {
    let mut body = Map::new();
    body.extend(name.map(|n| ("name".to_owned(), Value::from(n))));
    body.extend(comment.map(|c| ("comment".to_owned(), Value::from(c))));
    Value::Object(body)
}

fn list(client: &Client) -> Result<(), Failure> {
    let answer = client.get(&["summits"], &[])?;
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let summits = answer.json()?.as_array().cloned().unwrap_or_default();
    if summits.is_empty() {
        println!("no summits");
        return Ok(());
    }
    let mut table = Table::new(&["ID", "TITLE", "TIME ZONE", "RELEASE", "RUNNER", "VERSION"]);
    for s in &summits {
        table.row(vec![
            text(s, "id"),
            text(s, "title"),
            text(s, "time_zone"),
            text(s, "release"),
            text(s, "runner"),
            text(s, "version"),
        ]);
    }
    print!("{table}");
    Ok(())
}

struct ImportArgs {
    format: Option<Format>,
    time_zone: Option<String>,
    person_prefix: Option<String>,
    expect_version: Option<u64>,
}

fn import(client: &Client, summit: &str, file: &PathBuf, args: ImportArgs) -> Result<(), Failure> {
    let shown = file.display();
    let content = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::new(EXIT_USAGE, format!("reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| Failure::new(EXIT_USAGE, format!("{shown}: {e}")))?
    };
    let body: Value =
        serde_json::from_str(&content).map_err(|e| Failure::new(EXIT_USAGE, format!("{shown}: not JSON: {e}")))?;
    let format = match args.format {
        Some(f) => f,
        None if body.get("format").and_then(Value::as_str) == Some("podium-schedule") => Format::Podium,
        None if body.get("schedule").is_some() => Format::Frab,
        None => {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("{shown}: neither a Podium JSON schedule nor a frab schedule.json; give --format"),
            ));
        }
    };
    let mut query: Vec<(&str, String)> =
        args.expect_version.map(|v| ("expect_version", v.to_string())).into_iter().collect();
    let answer = match format {
        Format::Podium => {
            if args.time_zone.is_some() || args.person_prefix.is_some() {
                return Err(Failure::new(EXIT_USAGE, "--time-zone and --person-prefix are for frab files"));
            }
            client.call(Method::PUT, &["summits", summit, "schedule"], &query, Some(&body))?
        }
        Format::Frab => {
            query.extend(args.time_zone.map(|z| ("time_zone", z)));
            query.extend(args.person_prefix.map(|p| ("person_prefix", p)));
            client.call(Method::POST, &["summits", summit, "import"], &query, Some(&body))?
        }
    };
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let written = answer.json()?;
    let counts = &written["counts"];
    println!("imported summit {summit}: schedule version {}", text(&written, "version"));
    println!(
        "{} stages, {} sessions, {} slots, {} people, {} shifts",
        text(counts, "stages"),
        text(counts, "sessions"),
        text(counts, "slots"),
        text(counts, "people"),
        text(counts, "shifts")
    );
    let warnings = written["warnings"].as_array().cloned().unwrap_or_default();
    if !warnings.is_empty() {
        let titles = titles(client, summit);
        for w in &warnings {
            println!("warning: {}", warning(w, &titles));
        }
    }
    Ok(())
}

/// Slot GUID → title, from the released slots the runner records and the work in progress; empty when unreadable.
fn titles(client: &Client, summit: &str) -> BTreeMap<String, String> {
    let mut titles = BTreeMap::new();
    if let Ok(status) = client.get(&["summits", summit], &[]).and_then(|a| a.json()) {
        for stage in status["stages"].as_array().into_iter().flatten() {
            for slot in stage["slots"].as_array().into_iter().flatten() {
                if let (Some(guid), Some(title)) = (slot["guid"].as_str(), slot["title"].as_str()) {
                    titles.insert(guid.to_owned(), title.to_owned());
                }
            }
        }
    }
    if let Ok(doc) = client.get(&["summits", summit, "schedule"], &[]).and_then(|a| a.json()) {
        let schedule = &doc["schedule"];
        for (guid, slot) in schedule["slots"].as_object().into_iter().flatten() {
            let kind = &slot["kind"];
            let title = match kind["kind"].as_str() {
                Some("break") => kind["title"].as_str(),
                _ => kind["code"].as_str().and_then(|code| schedule["sessions"][code]["title"].as_str()),
            };
            if let Some(title) = title {
                titles.insert(guid.clone(), title.to_owned());
            }
        }
    }
    titles
}

fn title_of<'a>(titles: &'a BTreeMap<String, String>, guid: &str) -> &'a str {
    titles.get(guid).map_or("-", String::as_str)
}

/// A slot as `<guid> "<title>"` (the title when known).
fn slot_name(titles: &BTreeMap<String, String>, v: &Value) -> String {
    let guid = v.as_str().unwrap_or("?");
    match titles.get(guid) {
        Some(title) => format!("{guid} {title:?}"),
        None => guid.to_owned(),
    }
}

/// One release warning in words.
fn warning(w: &Value, titles: &BTreeMap<String, String>) -> String {
    let slot = |k: &str| slot_name(titles, &w[k]);
    match w["kind"].as_str().unwrap_or_default() {
        "stage_overlap" => format!(
            "stage {}: {} and {} overlap (a release is refused)",
            text(w, "stage"),
            slot("first"),
            slot("second")
        ),
        "double_booked" => format!("{} is in {} and {} at once", text(w, "person"), slot("first"), slot("second")),
        "undermoderated" => format!(
            "{}: {} moderator shifts at some moment, the stage wants {}",
            slot("slot"),
            text(w, "shifts"),
            text(w, "min")
        ),
        "gap" => format!(
            "stage {} is always on and has nothing from {} to {} UTC",
            text(w, "stage"),
            time(w["from"].as_i64()),
            time(w["to"].as_i64())
        ),
        _ => w.to_string(),
    }
}

fn diff_count(diff: &Value, key: &str) -> usize {
    diff[key].as_array().map_or(0, Vec::len)
}

fn print_release(client: &Client, summit: &str, raw: &str, release: &Value) -> Result<(), Failure> {
    if client.json {
        println!("{}", raw.trim_end());
        return Ok(());
    }
    let diff = &release["diff"];
    println!(
        "released summit {summit}: release {} {:?} ({} slots)",
        text(release, "seq"),
        release["name"].as_str().unwrap_or_default(),
        text(release, "slots")
    );
    println!(
        "new {}, canceled {}, moved {}, changed {}",
        diff_count(diff, "new"),
        diff_count(diff, "canceled"),
        diff_count(diff, "moved"),
        diff_count(diff, "changed")
    );
    let titles = titles(client, summit);
    let mut table = Table::new(&["CHANGE", "SLOT", "TITLE", "DETAIL (UTC)"]);
    let mut rows = 0;
    for kind in ["new", "canceled", "changed"] {
        for guid in diff[kind].as_array().into_iter().flatten() {
            let guid = guid.as_str().unwrap_or("?");
            table.row(vec![kind.to_owned(), guid.to_owned(), title_of(&titles, guid).to_owned(), "-".to_owned()]);
            rows += 1;
        }
    }
    for m in diff["moved"].as_array().into_iter().flatten() {
        let guid = m["guid"].as_str().unwrap_or("?");
        let detail = format!(
            "{} {} -> {} {}",
            text(m, "old_stage"),
            time(m["old_start"].as_i64()),
            text(m, "new_stage"),
            time(m["new_start"].as_i64())
        );
        table.row(vec!["moved".to_owned(), guid.to_owned(), title_of(&titles, guid).to_owned(), detail]);
        rows += 1;
    }
    if rows > 0 {
        print!("{table}");
    }
    for w in release["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", warning(w, &titles));
    }
    Ok(())
}

fn releases(client: &Client, summit: &str) -> Result<(), Failure> {
    let answer = client.get(&["summits", summit, "releases"], &[])?;
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let all = answer.json()?.as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        println!("nothing released yet");
        return Ok(());
    }
    let mut table = Table::new(&[
        "SEQ",
        "NAME",
        "PUBLISHED (UTC)",
        "SLOTS",
        "NEW",
        "CANCELED",
        "MOVED",
        "CHANGED",
        "WARNINGS",
        "COMMENT",
    ]);
    for r in &all {
        let diff = &r["diff"];
        let comment = r["comment"].as_str().filter(|c| !c.is_empty()).unwrap_or("-").to_owned();
        table.row(vec![
            text(r, "seq"),
            text(r, "name"),
            time(r["published_at_ms"].as_i64()),
            text(r, "slots"),
            diff_count(diff, "new").to_string(),
            diff_count(diff, "canceled").to_string(),
            diff_count(diff, "moved").to_string(),
            diff_count(diff, "changed").to_string(),
            r["warnings"].as_array().map_or(0, Vec::len).to_string(),
            comment,
        ]);
    }
    print!("{table}");
    Ok(())
}

/// A list of identities, `-` when empty.
fn people(v: &Value) -> String {
    let list: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() { "-".to_owned() } else { list.join(",") }
}

fn status(client: &Client, summit: &str, next: usize, all: bool) -> Result<(), Failure> {
    let answer = client.get(&["summits", summit], &[])?;
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let status = answer.json()?;
    let s = &status["summit"];
    println!("summit:   {} {:?} ({})", text(s, "id"), s["title"].as_str().unwrap_or_default(), text(s, "time_zone"));
    println!("release:  {}", s["release"].as_u64().map_or_else(|| "none yet".to_owned(), |r| r.to_string()));
    println!("runner:   {}", s["runner"].as_str().unwrap_or("no hub runs it now"));
    println!("times:    UTC");
    let stages = status["stages"].as_array().cloned().unwrap_or_default();
    if stages.is_empty() {
        println!("\nno stage running yet");
        return Ok(());
    }
    for stage in &stages {
        let active = stage["active"].as_str();
        println!(
            "\nstage {}: room {}, backstage {}, release {}, pending outputs {}",
            text(stage, "id"),
            text(stage, "room"),
            text(stage, "backstage"),
            text(stage, "release"),
            text(stage, "pending")
        );
        let mut slots = stage["slots"].as_array().cloned().unwrap_or_default();
        slots.sort_by_key(|slot| slot["start"].as_i64().unwrap_or(0));
        let is_final = |slot: &Value| matches!(slot["status"].as_str(), Some("completed" | "canceled"));
        let mut table = Table::new(&["STATUS", "START", "END", "TITLE", "CHECKED IN", "NOTES", "SLOT"]);
        let mut waiting = 0;
        let mut rows = 0;
        for slot in &slots {
            let is_active = active == slot["guid"].as_str();
            if !all && !is_active {
                if is_final(slot) || waiting >= next {
                    continue;
                }
                waiting += 1;
            }
            let mut notes = Vec::new();
            if slot["overrun"].as_bool().unwrap_or(false) {
                notes.push("overrun".to_owned());
            }
            if let Some(sub) = slot["substitute"].as_str() {
                notes.push(format!("substitute {sub}"));
            }
            if slot["no_show"].as_array().is_some_and(|a| !a.is_empty()) {
                notes.push(format!("no-show {}", people(&slot["no_show"])));
            }
            if slot["start"] != slot["planned_start"] || slot["end"] != slot["planned_end"] {
                notes.push(format!(
                    "planned {}-{}",
                    time(slot["planned_start"].as_i64()),
                    time(slot["planned_end"].as_i64())
                ));
            }
            let title = if slot["is_break"].as_bool().unwrap_or(false) {
                format!("({})", slot["title"].as_str().unwrap_or("break"))
            } else {
                text(slot, "title")
            };
            table.row(vec![
                text(slot, "status"),
                time(slot["start"].as_i64()),
                time(slot["end"].as_i64()),
                title,
                people(&slot["checked_in"]),
                if notes.is_empty() { "-".to_owned() } else { notes.join("; ") },
                text(slot, "guid"),
            ]);
            rows += 1;
        }
        if rows == 0 {
            println!("no slots waiting");
        } else {
            print!("{table}");
        }
        let shifts: Vec<&Value> = stage["shifts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| all || !s["ended"].as_bool().unwrap_or(false))
            .collect();
        if !shifts.is_empty() {
            let mut table = Table::new(&["SHIFT", "PERSON", "ROLE", "START", "END", "CHECKED IN", "STATE"]);
            for run in shifts {
                let shift = &run["shift"];
                let flag = |k: &str| run[k].as_bool().unwrap_or(false);
                let state = match (flag("started"), flag("ended")) {
                    (_, true) => "ended",
                    (true, false) => "running",
                    (false, false) => "waiting",
                };
                table.row(vec![
                    text(shift, "id"),
                    text(shift, "person"),
                    text(shift, "role"),
                    time(shift["start"].as_i64()),
                    time(shift["end"].as_i64()),
                    if flag("checked_in") { "yes" } else { "no" }.to_owned(),
                    state.to_owned(),
                ]);
            }
            print!("{table}");
        }
    }
    Ok(())
}

fn act(client: &Client, summit: &str, stage: &str, action: ActionCommand) -> Result<(), Failure> {
    let (body, done) = match &action {
        ActionCommand::Start => (json!({"action": "start"}), "started"),
        ActionCommand::End => (json!({"action": "end"}), "ended"),
        ActionCommand::Extend { minutes } => (json!({"action": "extend", "minutes": minutes}), "extended"),
        ActionCommand::Cancel { slot } => (json!({"action": "cancel", "slot": slot}), "canceled"),
        ActionCommand::CheckIn { person } => (json!({"action": "check_in", "person": person}), "checked in"),
    };
    let answer = client.call(Method::POST, &["summits", summit, "stages", stage, "actions"], &[], Some(&body))?;
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let out = answer.json()?;
    let mut line = match &action {
        ActionCommand::CheckIn { person } => format!("checked in {person} on stage {stage}"),
        _ => format!("{done} on stage {stage}"),
    };
    if let Some(slot) = out["slot"].as_str() {
        line.push_str(&format!(": slot {slot}"));
    }
    if let Some(end) = out["end_ms"].as_i64() {
        line.push_str(&format!(", ends {} UTC", time(Some(end))));
    }
    println!("{line}");
    Ok(())
}

/// `YYYY-MM-DD HH:MM` in UTC for ms since the Unix epoch; `-` when absent.
fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".to_owned() };
    let secs = ms.div_euclid(1000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to the civil date (proleptic Gregorian; Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn utc_times() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00");
        assert_eq!(time(Some(951_782_400_000)), "2000-02-29 00:00");
        assert_eq!(time(Some(1_767_225_599_000)), "2025-12-31 23:59");
        assert_eq!(time(Some(-60_000)), "1969-12-31 23:59");
        assert_eq!(time(None), "-");
    }
}
