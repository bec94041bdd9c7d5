//! Operator commands on top of the admin API (`proto/ADMIN.md`): `podium rooms`, `podium moderate`,
//! `podium hubs`, `podium webhooks` and `podium summit`. Each prints a table, or with `--json` the API's JSON as it came.
//!
//! Exit codes: 0 done; 1 any other failure (a refusal such as `conflict`, a server error, a failed webhook test);
//! 2 a usage error (clap's, or the API's `400`/`413`/`415`/`422`); 3 no, a wrong or too small a credential
//! (`401`/`403`); 4 not found (`404`); 5 the hub could not be reached.

pub(crate) mod hubs;
pub(crate) mod moderate;
pub(crate) mod rooms;
pub(crate) mod summit;
mod table;
pub(crate) mod webhooks;

use std::process::ExitCode;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// Where the admin API is, the credential, and the output format.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct Api {
    /// The hub's HTTP address (any hub sharing the store answers for every room).
    #[arg(long, env = "PODIUM_URL", default_value = "http://127.0.0.1:7880", global = true)]
    url: String,
    /// An admin API key (`podium admin-key`) or an admin-grant token (`podium token --admin`).
    #[arg(long, env = "PODIUM_ADMIN_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// Print the API's JSON as it came instead of a table (lists with `--all`: the pages merged into one).
    #[arg(long, global = true)]
    json: bool,
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    code: u8,
}

pub(crate) const EXIT_OTHER: u8 = 1;
pub(crate) const EXIT_USAGE: u8 = 2;
pub(crate) const EXIT_AUTH: u8 = 3;
pub(crate) const EXIT_NOT_FOUND: u8 = 4;
pub(crate) const EXIT_UNREACHABLE: u8 = 5;

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self { message: message.into(), code }
    }

    /// An answer that is not a success: `<detail> (<code>, HTTP <status>)` for a problem (RFC 9457).
    fn from_answer(status: StatusCode, body: &str) -> Self {
        let code = match status.as_u16() {
            401 | 403 => EXIT_AUTH,
            404 => EXIT_NOT_FOUND,
            400 | 413 | 415 | 422 => EXIT_USAGE,
            _ => EXIT_OTHER,
        };
        let problem: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| problem.as_ref().and_then(|p| p.get(name)).and_then(Value::as_str).map(str::to_owned);
        let message = match (field("detail").or_else(|| field("title")), field("code")) {
            (Some(detail), Some(error)) => format!("{detail} ({error}, HTTP {})", status.as_u16()),
            (Some(detail), None) => format!("{detail} (HTTP {})", status.as_u16()),
            _ => {
                let text: String = body.trim().chars().take(200).collect();
                if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") }
            }
        };
        Self { message, code }
    }
}

/// Prints the failure as `error: ...` on stderr and makes the exit code.
pub(crate) fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// A small single-threaded runtime for one command's requests.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_OTHER, format!("starting the runtime: {e}")))
}

/// A successful answer: its status and body text.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Result<Value, Failure> {
        serde_json::from_str(&self.text)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("the hub answered HTTP {} with no JSON: {e}", self.status)))
    }
}

/// The admin API at one hub, with one credential.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    key: String,
    runtime: tokio::runtime::Runtime,
    pub(crate) json: bool,
}

impl Client {
    pub(crate) fn new(api: &Api) -> Result<Self, Failure> {
        let base = Url::parse(&api.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
            .ok_or_else(|| Failure::new(EXIT_USAGE, format!("--url {:?}: not an http:// or https:// URL", api.url)))?;
        let key = api.key.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            Failure::new(
                EXIT_AUTH,
                "no credential: give --key (or PODIUM_ADMIN_KEY) an admin API key or an admin-grant token",
            )
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("podium-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::new(EXIT_OTHER, format!("making the HTTP client: {e}")))?;
        Ok(Self { http, base, key, runtime: runtime()?, json: api.json })
    }

    /// The URL of `/v1/admin/<segments...>` (each segment percent-encoded) with a query.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["v1", "admin"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// One request; anything but a 2xx answer is a [`Failure`].
    pub(crate) fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, Failure> {
        let url = self.url(segments, query);
        let mut request = self.http.request(method, url.clone()).bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| {
                let what = if e.is_timeout() { "timed out" } else { "could not reach" };
                // The innermost cause says what went wrong (`Connection refused`, a DNS failure...).
                let mut cause: &dyn std::error::Error = &e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                let origin = url.origin().ascii_serialization();
                Failure::new(EXIT_UNREACHABLE, format!("{what} the hub at {origin}: {cause}"))
            })?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|e| Failure::new(EXIT_UNREACHABLE, format!("reading the answer: {e}")))?;
            if status.is_success() { Ok(Answer { status, text }) } else { Err(Failure::from_answer(status, &text)) }
        })
    }

    pub(crate) fn get(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Answer, Failure> {
        self.call(Method::GET, segments, query, None)
    }

    /// Every page of a list (the items under `field`), following `next` cursors from the query's `cursor`; one page
    /// unless `all`.
    pub(crate) fn pages(
        &self,
        segments: &[&str],
        mut query: Vec<(&str, String)>,
        field: &str,
        all: bool,
    ) -> Result<List, Failure> {
        let mut items = Vec::new();
        let mut pages = 0_usize;
        loop {
            let answer = self.get(segments, &query)?;
            let page = answer.json()?;
            pages += 1;
            items.extend(page.get(field).and_then(Value::as_array).cloned().unwrap_or_default());
            let next = page.get("next").and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned);
            let raw = (pages == 1 && (next.is_none() || !all)).then_some(answer.text);
            match next {
                Some(next) if all => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", next));
                }
                next => return Ok(List { field: field.to_owned(), items, next, raw }),
            }
        }
    }
}

/// The items of a list's pages.
pub(crate) struct List {
    field: String,
    pub(crate) items: Vec<Value>,
    /// Where the next page starts (when not all were read).
    pub(crate) next: Option<String>,
    /// The answer as it came, when it was a single page.
    raw: Option<String>,
}

impl List {
    /// With `--json`: the single page as it came, or the pages merged as `{field: [...]}`.
    pub(crate) fn print_json(self) {
        match self.raw {
            Some(raw) => println!("{}", raw.trim_end()),
            None => {
                let mut out = serde_json::Map::new();
                out.insert(self.field, Value::Array(self.items));
                if let Some(next) = self.next {
                    out.insert("next".to_owned(), Value::String(next));
                }
                println!("{}", Value::Object(out));
            }
        }
    }
}

/// A field as table text: strings as they are, numbers and booleans printed, `-` when absent or null.
pub(crate) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `yes`/`no` for a boolean field.
pub(crate) fn yes_no(v: &Value, key: &str) -> &'static str {
    if v.get(key).and_then(Value::as_bool).unwrap_or(false) { "yes" } else { "no" }
}

pub(crate) use table::Table;
