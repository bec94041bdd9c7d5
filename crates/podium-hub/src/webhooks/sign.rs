//! Standard Webhooks v1 signatures: HMAC-SHA256 over `id.timestamp.body`, base64, `v1,` prefixed, one per secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The key bytes of a `whsec_<base64>` secret (the prefix is optional, as in the reference libraries).
pub(crate) fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let text = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD.decode(text).map_err(|e| format!("not base64 after `whsec_`: {e}"))?;
    if key.len() < 16 {
        return Err(format!("{} bytes; use 24 to 64 random bytes", key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header value: `v1,<sig>` for each key, space-separated.
pub(crate) fn signature(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut out = String::new();
    for key in keys {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else { continue };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks reference libraries' tests (also what the Python `standardwebhooks`
    /// package computes for it).
    #[test]
    fn signs_the_reference_vector() {
        let key = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let sig = signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let a = parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let b = parse_secret("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("secret");
        let sig = signature(&[a, b], "msg_1", 1, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert!(parse_secret("whsec_not base64!").is_err());
        assert!(parse_secret("whsec_AAAA").is_err());
    }
}
