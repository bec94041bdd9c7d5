//! TURN credentials for participants: the "TURN REST API" scheme (draft-uberti-behave-turn-rest) that coturn
//! implements with `use-auth-secret` / `static-auth-secret`, and that other TURN servers (eturnal, Pion's, most
//! hosted services) accept too.
//!
//! The hub and the TURN server share a secret. For each participant the hub mints
//!
//! - `username` = `<expiry>:<tag>`: the expiry in seconds since the Unix epoch, then an opaque tag of the
//!   participant's identity;
//! - `credential` = base64(HMAC-SHA1(secret, username)).
//!
//! The TURN server recomputes the HMAC from the username and refuses it once the expiry has passed. Nothing is
//! stored and nothing travels between the hub and the TURN server.
//!
//! Why a tag and not the identity itself: identities are application data (an e-mail address, a user id) that a
//! TURN server logs with every allocation, and they may hold characters coturn refuses in a username. The tag is
//! the first 12 bytes of HMAC-SHA1(secret, "podium-turn-user:" + identity), base64url: stable per identity (coturn
//! counts `user-quota` per what follows the timestamp, so the quota is per participant), meaningless without the
//! secret, and always 16 safe characters.
//!
//! When coturn checks the expiry: when it authenticates the first request of a TURN session (the `Allocate`).
//! It keeps the key for the session, so the allocation's later `Refresh`, `CreatePermission` and `ChannelBind`
//! requests pass after the expiry as long as the client keeps the allocation alive (coturn's
//! `check_stun_auth`, `src/server/ns_turn_server.c`). So credentials matter when a peer connection gathers: its
//! first negotiation, an ICE restart, a new peer connection after a media move. The hub therefore pushes fresh
//! ones (`ice_servers`) when half their lifetime has passed, and every `welcome` carries fresh ones.

use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};
use podium_proto as proto;

use crate::config::TurnConfig;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// What separates the expiry from the rest of the username (coturn's default `rest-api-separator`).
const SEPARATOR: char = ':';

/// Domain separation of the identity tag from the credentials, which are HMACs under the same secret.
const TAG_CONTEXT: &[u8] = b"podium-turn-user:";

/// The ICE servers and credentials for `identity`, valid from `now_ms` (milliseconds since the Unix epoch) for the
/// configured lifetime; `None` when no TURN server is configured.
pub(crate) fn ice_servers(config: &TurnConfig, identity: &str, now_ms: u64) -> Option<proto::IceServers> {
    if !config.enabled() {
        return None;
    }
    // Validated at load: TURN URLs come with a secret.
    let secret = config.secret.as_deref()?.as_bytes();
    let expiry_s = now_ms / 1_000 + config.credential_ttl_s;
    let username = format!("{expiry_s}{SEPARATOR}{}", tag(secret, identity));
    let credential = credential(secret, &username);
    Some(proto::IceServers {
        servers: vec![proto::IceServer { urls: config.urls.clone(), username, credential }],
        expires_at_ms: expiry_s * 1_000,
    })
}

/// The TURN password for `username`: base64 (standard, padded) of HMAC-SHA1(secret, username).
pub(crate) fn credential(secret: &[u8], username: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The opaque, stable tag of `identity` in TURN usernames (see the module documentation).
fn tag(secret: &[u8], identity: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(TAG_CONTEXT);
    mac.update(identity.as_bytes());
    let digest = mac.finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TurnConfig {
        TurnConfig {
            urls: vec!["turn:turn.example.com:3478?transport=udp".into(), "turns:turn.example.com:5349".into()],
            secret: Some("0123456789abcdef-podium-test".into()),
            credential_ttl_s: 3_600,
            ..TurnConfig::default()
        }
    }

    /// Known answers computed independently, with Python's `hmac`:
    /// `base64.b64encode(hmac.new(secret, username.encode(), hashlib.sha1).digest())`.
    #[test]
    fn credentials_match_an_independent_hmac_sha1() {
        assert_eq!(credential(b"north", "1767229200:alice"), "NtnEvQtTWyjHZIle0+Ms+zW2Ryc=");
        assert_eq!(
            credential(b"0123456789abcdef-podium-test", "1767229200:q0Xk3vRZ8uVd1a2b"),
            "mFhYra/kX21SClcUN2skcX4hQZw="
        );
    }

    #[test]
    fn minted_servers_carry_the_urls_an_expiry_and_a_matching_credential() {
        let c = config();
        let now_ms = 1_767_225_600_123;
        let minted = ice_servers(&c, "alice@example.com", now_ms).expect("configured");
        assert_eq!(minted.expires_at_ms, (1_767_225_600 + 3_600) * 1_000);
        let [server] = minted.servers.as_slice() else { panic!("one server entry: {minted:?}") };
        assert_eq!(server.urls, c.urls);
        let (expiry, rest) = server.username.split_once(':').expect("<expiry>:<tag>");
        assert_eq!(expiry, "1767229200");
        // The identity does not show; the tag is 16 URL-safe characters, the same for the same identity.
        assert_eq!(rest.len(), 16, "{rest}");
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{rest}");
        assert!(!server.username.contains("alice"));
        assert_eq!(server.credential, credential(b"0123456789abcdef-podium-test", &server.username));
        let again = ice_servers(&c, "alice@example.com", now_ms + 5_000).expect("configured");
        assert_eq!(again.servers[0].username, format!("1767229205:{rest}"), "the same tag, a later expiry");
        let other = ice_servers(&c, "bob", now_ms).expect("configured");
        assert_ne!(other.servers[0].username, server.username);
    }

    #[test]
    fn nothing_without_urls() {
        let c = TurnConfig { urls: Vec::new(), ..config() };
        assert!(ice_servers(&c, "alice", 0).is_none());
    }
}
