//! `podium moderate <room> <identity> <action>`: a moderation action through the admin API (scope moderate).

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Api, Client, EXIT_USAGE, Failure};

#[derive(Args)]
pub(crate) struct Moderate {
    #[command(flatten)]
    api: Api,
    /// The room.
    room: String,
    /// Whom it is about (`-` for none: `revoke --token-id` alone).
    identity: String,
    /// What to do. Actions on a participant follow the same rules as a moderator's request (token ceilings, stage
    /// capacity, presence); ban, unban and the guest list take any identity, present or not.
    #[arg(value_enum)]
    action: Action,
    /// Why: at most 256 characters; recorded in the audit log and webhooks (not for unban and the guest list).
    #[arg(long)]
    reason: Option<String>,
    /// With `revoke`: the token id (`jti`) to refuse, alone (identity `-`) or together with the identity.
    #[arg(long)]
    token_id: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Action {
    /// Mute a stage member.
    Mute,
    /// Send a stage member back to the audience.
    MoveToAudience,
    /// Invite an audience member onto the stage (their token must allow it).
    InviteToStage,
    /// Withdraw an invitation to the stage.
    CancelInvite,
    /// Bring a raised hand onto the stage.
    ApproveHand,
    /// Make a participant (whose token allows it) a moderator.
    MakeModerator,
    /// Make a moderator a speaker.
    RevokeModerator,
    /// Remove the participant (they may rejoin).
    Kick,
    /// Ban the identity (removing it if present).
    Ban,
    /// Lift a ban.
    Unban,
    /// Put the identity on the closed-room guest list.
    GuestAdd,
    /// Take the identity off the guest list.
    GuestRemove,
    /// Revoke the identity's tokens issued until now (or `--token-id`'s token): cut off at once on every hub.
    Revoke,
}

impl Moderate {
    pub(crate) fn run(self) -> Result<(), Failure> {
        let Self { api, room, identity, action, reason, token_id } = self;
        let client = Client::new(&api)?;
        let usage = |m: &str| Err(Failure::new(EXIT_USAGE, m));
        if token_id.is_some() && action != Action::Revoke {
            return usage("--token-id goes with revoke only");
        }
        if reason.is_some() && matches!(action, Action::Unban | Action::GuestAdd | Action::GuestRemove) {
            return usage("--reason does not go with unban, guest-add or guest-remove");
        }
        let who = (identity != "-").then_some(identity.as_str());
        let Some(target) = who.or(if action == Action::Revoke { Some("") } else { None }) else {
            return usage("this action needs an identity (`-` is only for revoke --token-id)");
        };
        // The API's path names the action in snake case (`move_to_audience`).
        let path_action = action.to_possible_value().map(|v| v.get_name().replace('-', "_")).unwrap_or_default();
        let with_reason = || reason.as_ref().map(|r| json!({ "reason": r }));
        let (method, segments, body): (Method, Vec<&str>, Option<Value>) = match action {
            Action::Ban => (Method::PUT, vec!["rooms", &room, "bans", target], with_reason()),
            Action::Unban => (Method::DELETE, vec!["rooms", &room, "bans", target], None),
            Action::GuestAdd => (Method::PUT, vec!["rooms", &room, "guests", target], None),
            Action::GuestRemove => (Method::DELETE, vec!["rooms", &room, "guests", target], None),
            Action::Revoke => {
                if who.is_none() && token_id.is_none() {
                    return usage("revoke needs an identity, --token-id, or both");
                }
                let mut body = Map::new();
                let fields = [("identity", who.map(str::to_owned)), ("token_id", token_id), ("reason", reason.clone())];
                body.extend(fields.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), Value::String(v)))));
                let body = Value::Object(body);
                (Method::POST, vec!["rooms", &room, "revocations"], Some(body))
            }
            _ => (Method::POST, vec!["rooms", &room, "participants", target, &path_action], with_reason()),
        };
        client.call(method, &segments, &[], body.as_ref())?;
        if !client.json {
            let action = action.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
            match who {
                Some(who) => println!("done: {action} {who} in {room}"),
                None => println!("done: {action} in {room}"),
            }
        }
        Ok(())
    }
}
