//! `podium hubs`: the hubs sharing the store, through the admin API (`podium nodes` reads Redis directly).

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{Api, Client, Failure, Table, text};

#[derive(Args)]
pub(crate) struct Hubs {
    #[command(flatten)]
    api: Api,
    #[command(subcommand)]
    command: HubsCommand,
}

#[derive(Subcommand)]
enum HubsCommand {
    /// The hubs sharing the store, alive or not (scope read); `*` marks the hub that answered.
    List,
    /// Drain a hub (scope admin): what SIGTERM does; its rooms and clients move to the other hubs, then it stops.
    Drain {
        /// The hub's node id (from `podium hubs list`).
        id: String,
    },
}

impl Hubs {
    pub(crate) fn run(self) -> Result<(), Failure> {
        let client = Client::new(&self.api)?;
        match self.command {
            HubsCommand::List => {
                let answer = client.get(&["nodes"], &[])?;
                if client.json {
                    println!("{}", answer.text.trim_end());
                    return Ok(());
                }
                let nodes = answer.json()?;
                let mut table = Table::new(&["ID", "STATE", "LAST HEARTBEAT", "LEASES", "URL", "THIS"]);
                for n in nodes["nodes"].as_array().into_iter().flatten() {
                    let flag = |k: &str| n.get(k).and_then(Value::as_bool).unwrap_or(false);
                    let state = match (flag("alive"), flag("draining")) {
                        (true, false) => "alive",
                        (true, true) => "draining",
                        (false, _) => "gone",
                    };
                    let this = if flag("this") { "*" } else { "" };
                    let number = |k: &str| n.get(k).and_then(Value::as_u64).unwrap_or(0);
                    let age = format!("{:.1} s ago", Duration::from_millis(number("heartbeat_age_ms")).as_secs_f64());
                    let row = [text(n, "id"), state.to_owned(), age, number("leases").to_string(), text(n, "url")];
                    table.row(row.into_iter().chain([this.to_owned()]).collect());
                }
                print!("{table}");
                Ok(())
            }
            HubsCommand::Drain { id } => {
                client.call(Method::POST, &["nodes", &id, "drain"], &[], None)?;
                if !client.json {
                    println!("draining hub {id}");
                }
                Ok(())
            }
        }
    }
}
