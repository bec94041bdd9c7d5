//! `podium rooms`: list, create, show, update and end rooms, and list a room's participants.

use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Api, Client, Failure, Table, text, yes_no};

#[derive(Args)]
pub(crate) struct Rooms {
    #[command(flatten)]
    api: Api,
    #[command(subcommand)]
    command: RoomsCommand,
}

#[derive(Subcommand)]
enum RoomsCommand {
    /// Rooms by name, a page at a time (scope read).
    List {
        /// Page size, 1-100.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Follow the `next` cursors to the last page.
        #[arg(long)]
        all: bool,
        /// Start after this cursor (the `next` a previous page printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Create a room (scope admin); persistent unless `--ephemeral`.
    Create {
        /// 1-128 characters of `A-Z a-z 0-9 . _ -`.
        name: String,
        /// Seats on the stage (default: the hub's `room.stage_capacity`).
        #[arg(long, value_name = "N")]
        stage_capacity: Option<u32>,
        /// Only identities on the guest list may join.
        #[arg(long)]
        closed: bool,
        /// Anyone who raises a hand goes on stage while a seat is free.
        #[arg(long)]
        open_mic: bool,
        /// An ad hoc room: it ends once it stays empty, like rooms made by a first join.
        #[arg(long)]
        ephemeral: bool,
        /// An identity for the guest list (repeat for several).
        #[arg(long = "guest", value_name = "IDENTITY")]
        guests: Vec<String>,
    },
    /// One room: settings, counts, stage, bans, guest list (scope read).
    Show { name: String },
    /// Change a room's settings (scope admin); the ones not given stay as they are.
    Update {
        name: String,
        #[arg(long, value_name = "N")]
        stage_capacity: Option<u32>,
        #[arg(long, value_name = "BOOL")]
        closed: Option<bool>,
        #[arg(long, value_name = "BOOL")]
        open_mic: Option<bool>,
        /// Whether the empty timeout may end the room (`false`: it does).
        #[arg(long, value_name = "BOOL")]
        persistent: Option<bool>,
        /// Recorded in the audit log and webhooks.
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a room for everyone (scope admin); a persistent room goes with its bans and guest list.
    End { name: String },
    /// A room's participants in join order (scope read).
    Participants {
        name: String,
        /// Only this role.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        /// Page size, 1-100.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Follow the `next` cursors to the last page.
        #[arg(long)]
        all: bool,
        /// Start after this cursor.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Audience,
    Speaker,
    Moderator,
}

impl RoleArg {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Audience => "audience",
            Self::Speaker => "speaker",
            Self::Moderator => "moderator",
        }
    }
}

impl Rooms {
    pub(crate) fn run(self) -> Result<(), Failure> {
        let client = Client::new(&self.api)?;
        match self.command {
            RoomsCommand::List { limit, all, cursor } => list(&client, limit, all, cursor),
            RoomsCommand::Create { name, stage_capacity, closed, open_mic, ephemeral, guests } => {
                // Settings not given are left to the hub's defaults (`[room]`).
                let mut body = json!({"name": name, "persistent": !ephemeral});
                if closed {
                    body["closed"] = json!(true);
                }
                if open_mic {
                    body["open_mic"] = json!(true);
                }
                if let Some(n) = stage_capacity {
                    body["stage_capacity"] = json!(n);
                }
                if !guests.is_empty() {
                    body["guests"] = json!(guests);
                }
                let answer = client.call(Method::POST, &["rooms"], &[], Some(&body))?;
                print_room(&client, &answer.text, &answer.json()?)
            }
            RoomsCommand::Show { name } => {
                let answer = client.get(&["rooms", &name], &[])?;
                print_room(&client, &answer.text, &answer.json()?)
            }
            RoomsCommand::Update { name, stage_capacity, closed, open_mic, persistent, reason } => {
                let mut body = Map::new();
                let fields = [
                    ("stage_capacity", stage_capacity.map(Value::from)),
                    ("closed", closed.map(Value::from)),
                    ("open_mic", open_mic.map(Value::from)),
                    ("persistent", persistent.map(Value::from)),
                    ("reason", reason.map(Value::from)),
                ];
                body.extend(fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))));
                let answer = client.call(Method::PATCH, &["rooms", &name], &[], Some(&Value::Object(body)))?;
                print_room(&client, &answer.text, &answer.json()?)
            }
            RoomsCommand::End { name } => {
                client.call(Method::DELETE, &["rooms", &name], &[], None)?;
                if !client.json {
                    println!("ended room {name}");
                }
                Ok(())
            }
            RoomsCommand::Participants { name, role, limit, all, cursor } => {
                participants(&client, &name, role, limit, all, cursor)
            }
        }
    }
}

fn paging(limit: u32, cursor: Option<String>) -> Vec<(&'static str, String)> {
    let mut query = vec![("limit", limit.to_string())];
    query.extend(cursor.map(|c| ("cursor", c)));
    query
}

/// Tells where the next page starts, when there is one and `--all` was not given.
fn more(next: Option<&str>) {
    if let Some(next) = next {
        eprintln!("more: --cursor {next} (or --all)");
    }
}

fn list(client: &Client, limit: u32, all: bool, cursor: Option<String>) -> Result<(), Failure> {
    let list = client.pages(&["rooms"], paging(limit, cursor), "rooms", all)?;
    if client.json {
        list.print_json();
        return Ok(());
    }
    let (rooms, next) = (list.items, list.next);
    if rooms.is_empty() {
        println!("no rooms");
    } else {
        let mut table = Table::new(&["NAME", "PERSISTENT", "STAGE", "AUDIENCE", "HANDS", "SETTINGS"]);
        for room in &rooms {
            let counts = &room["counts"];
            let settings = &room["settings"];
            table.row(vec![
                text(room, "name"),
                yes_no(room, "persistent").to_owned(),
                format!("{}/{}", text(counts, "stage"), text(settings, "stage_capacity")),
                text(counts, "audience"),
                text(counts, "hands"),
                flags(settings),
            ]);
        }
        print!("{table}");
    }
    more(next.as_deref());
    Ok(())
}

/// `open-mic,closed`, or `-`.
fn flags(settings: &Value) -> String {
    let on: Vec<&str> = [("open_mic", "open-mic"), ("closed", "closed")]
        .into_iter()
        .filter(|(k, _)| settings.get(k).and_then(Value::as_bool).unwrap_or(false))
        .map(|(_, label)| label)
        .collect();
    if on.is_empty() { "-".to_owned() } else { on.join(",") }
}

fn names(v: &Value) -> String {
    let list: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if list.is_empty() { "-".to_owned() } else { list.join(", ") }
}

fn print_room(client: &Client, raw: &str, room: &Value) -> Result<(), Failure> {
    if client.json {
        println!("{}", raw.trim_end());
        return Ok(());
    }
    let counts = &room["counts"];
    let settings = &room["settings"];
    println!("room:        {}", text(room, "name"));
    println!("persistent:  {}", yes_no(room, "persistent"));
    println!("seq:         {}", text(room, "seq"));
    println!(
        "settings:    stage capacity {}, open mic {}, closed {}",
        text(settings, "stage_capacity"),
        yes_no(settings, "open_mic"),
        yes_no(settings, "closed")
    );
    println!(
        "people:      {} on stage, {} in the audience, {} hands raised, {} in all",
        text(counts, "stage"),
        text(counts, "audience"),
        text(counts, "hands"),
        text(counts, "total")
    );
    println!("bans:        {}", names(&room["bans"]));
    println!("guests:      {}", names(&room["guests"]));
    let stage = room["stage"].as_array().cloned().unwrap_or_default();
    if !stage.is_empty() {
        let mut table = Table::new(&["STAGE", "NAME", "ROLE", "MUTED", "CONNECTED"]);
        for m in &stage {
            table.row(vec![
                text(m, "identity"),
                text(m, "name"),
                text(m, "role"),
                yes_no(m, "muted").to_owned(),
                yes_no(m, "connected").to_owned(),
            ]);
        }
        print!("\n{table}");
    }
    Ok(())
}

fn participants(
    client: &Client,
    room: &str,
    role: Option<RoleArg>,
    limit: u32,
    all: bool,
    cursor: Option<String>,
) -> Result<(), Failure> {
    let mut query = paging(limit, cursor);
    query.extend(role.map(|r| ("role", r.as_str().to_owned())));
    let list = client.pages(&["rooms", room, "participants"], query, "participants", all)?;
    if client.json {
        list.print_json();
        return Ok(());
    }
    let (people, next) = (list.items, list.next);
    if people.is_empty() {
        println!("no participants");
    } else {
        let mut table = Table::new(&["IDENTITY", "NAME", "ROLE", "CEILING", "MUTED", "CONNECTED", "HAND", "INVITED"]);
        for p in &people {
            table.row(vec![
                text(p, "identity"),
                text(p, "name"),
                text(p, "role"),
                text(p, "ceiling"),
                yes_no(p, "muted").to_owned(),
                yes_no(p, "connected").to_owned(),
                text(p, "hand_position"),
                yes_no(p, "invited").to_owned(),
            ]);
        }
        print!("{table}");
    }
    more(next.as_deref());
    Ok(())
}
