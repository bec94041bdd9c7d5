//! The sending half of SRTP for the thin egress path: forwarded audio is protected here, not by str0m.
//!
//! # Design
//!
//! * **Keys.** Once a listener's DTLS handshake completed, str0m (patched, `third_party/str0m/PODIUM-PATCH.md`)
//!   hands out the exported keying material (RFC 5764 §4.2: client key, server key, client salt, server salt), the
//!   negotiated profile and which side we are. [`SrtpTx::new`] takes our half (the client's when we are the DTLS
//!   client) and derives the RTP session keys with the SRTP key derivation function (RFC 3711 §4.3: AES in counter
//!   mode over the master salt with the label in byte 7; the key derivation rate is 0, so once per session). RTCP
//!   stays with str0m's own SRTP context.
//! * **Profiles.** The three str0m negotiates: `AEAD_AES_128_GCM` and `AEAD_AES_256_GCM` (RFC 7714: the 12-byte IV
//!   is the session salt XOR `00 00 | SSRC | ROC | SEQ`, the whole RTP header is the associated data, a 16-byte tag
//!   follows the ciphertext) and `AES128_CM_SHA1_80` (RFC 3711: AES-CTR with the IV `salt·2^16 XOR SSRC·2^64 XOR
//!   index·2^16`, then HMAC-SHA1 over the header, the ciphertext and the ROC, truncated to 10 bytes).
//! * **Crypto** is aws-lc-rs (already str0m's backend): key schedules are built once per listener and kept, so a
//!   packet costs one seal in place and nothing else: no allocation, no copy.
//!
//! # Invariants
//!
//! * The index (ROC·2^16 + SEQ) of a given SSRC is never used twice with the same key: the caller owns the SSRC's
//!   sequence number (an extended, strictly increasing counter per slot) and str0m never sends RTP on that SSRC.
//! * [`SrtpTx::protect`] never panics: a buffer too small for the tag is refused with `None`.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, AES_256, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use str0m::config::SrtpProfile;

/// Bytes an SRTP packet has beyond its RTP packet, at most (the GCM tag).
pub(crate) const MAX_OVERHEAD: usize = 16;

/// RFC 3711 §4.3.1 labels.
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;

/// A listener's outgoing SRTP for RTP (one per DTLS session).
pub(crate) struct SrtpTx {
    cipher: Cipher,
}

enum Cipher {
    Gcm {
        key: LessSafeKey,
        salt: [u8; 12],
    },
    /// Boxed: aws-lc-rs's HMAC key holds its inner and outer hash states inline (~1.7 KiB), and GCM listeners
    /// should not pay for it.
    CmSha1(Box<CmSha1>),
}

struct CmSha1 {
    key: EncryptingKey,
    salt: [u8; 14],
    auth: hmac::Key,
}

impl SrtpTx {
    /// Our sending keys from DTLS-exported keying material; `None` for a profile or a length we do not know.
    pub(crate) fn new(material: &[u8], profile: SrtpProfile, dtls_client: bool) -> Option<Self> {
        let (key_len, salt_len) = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => (16, 14),
            SrtpProfile::AEAD_AES_128_GCM => (16, 12),
            SrtpProfile::AEAD_AES_256_GCM => (32, 12),
            _ => return None,
        };
        if material.len() != 2 * (key_len + salt_len) {
            return None;
        }
        // [client key | server key | client salt | server salt]
        let (k, s) = if dtls_client { (0, 2 * key_len) } else { (key_len, 2 * key_len + salt_len) };
        let master = &material[k..k + key_len];
        let master_salt = &material[s..s + salt_len];
        let cipher = match profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let mut key = [0u8; 16];
                let mut auth = [0u8; 20];
                let mut salt = [0u8; 14];
                kdf(master, master_salt, LABEL_RTP_ENCRYPTION, &mut key)?;
                kdf(master, master_salt, LABEL_RTP_AUTH, &mut auth)?;
                kdf(master, master_salt, LABEL_RTP_SALT, &mut salt)?;
                let key = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &key).ok()?).ok()?;
                let auth = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth);
                Cipher::CmSha1(Box::new(CmSha1 { key, salt, auth }))
            }
            _ => {
                let mut key = [0u8; 32];
                let mut salt = [0u8; 12];
                kdf(master, master_salt, LABEL_RTP_ENCRYPTION, &mut key[..key_len])?;
                kdf(master, master_salt, LABEL_RTP_SALT, &mut salt)?;
                let alg = if key_len == 16 { &AES_128_GCM } else { &AES_256_GCM };
                Cipher::Gcm { key: LessSafeKey::new(UnboundKey::new(alg, &key[..key_len]).ok()?), salt }
            }
        };
        Some(Self { cipher })
    }

    /// Protects the RTP packet in `buf[..len]` (header of `header_len` bytes, then the payload) in place with SRTP
    /// index `index` (ROC·2^16 + sequence number) and returns the SRTP packet's length, or `None` when `buf` has no
    /// room for the tag.
    pub(crate) fn protect(
        &self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Option<usize> {
        if header_len > len || len > buf.len() {
            return None;
        }
        let roc = (index >> 16) as u32;
        match &self.cipher {
            Cipher::Gcm { key, salt } => {
                if buf.len() < len + 16 {
                    return None;
                }
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&(index as u16).to_be_bytes());
                for (b, s) in iv.iter_mut().zip(salt) {
                    *b ^= s;
                }
                let (header, rest) = buf.split_at_mut(header_len);
                let (payload, tail) = rest.split_at_mut(len - header_len);
                let tag = key
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&*header), payload)
                    .ok()?;
                tail[..16].copy_from_slice(tag.as_ref());
                Some(len + 16)
            }
            Cipher::CmSha1(cm) => {
                let CmSha1 { key, salt, auth } = &**cm;
                if buf.len() < len + 10 {
                    return None;
                }
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
                let index_be = index.to_be_bytes();
                for i in 0..8 {
                    iv[i + 6] ^= index_be[i];
                }
                for (b, s) in iv.iter_mut().zip(salt) {
                    *b ^= s;
                }
                key.less_safe_encrypt(&mut buf[header_len..len], EncryptionContext::Iv128(FixedLength::from(iv)))
                    .ok()?;
                let mut ctx = hmac::Context::with_key(auth);
                ctx.update(&buf[..len]);
                ctx.update(&roc.to_be_bytes());
                let tag = ctx.sign();
                buf[len..len + 10].copy_from_slice(&tag.as_ref()[..10]);
                Some(len + 10)
            }
        }
    }
}

/// The SRTP key derivation function (RFC 3711 §4.3.1, key derivation rate 0): the AES-CM keystream under the master
/// key, starting at the IV `(master salt XOR label·2^48)·2^16`.
fn kdf(master: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> Option<()> {
    let alg = if master.len() == 32 { &AES_256 } else { &AES_128 };
    let key = EncryptingKey::ctr(UnboundCipherKey::new(alg, master).ok()?).ok()?;
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    key.less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(iv))).ok()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 3711 Appendix B.3 (key derivation test vectors).
    #[test]
    fn key_derivation_matches_rfc_3711_b3() {
        let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut key = [0u8; 16];
        kdf(&master, &salt, LABEL_RTP_ENCRYPTION, &mut key).unwrap();
        assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut s = [0u8; 14];
        kdf(&master, &salt, LABEL_RTP_SALT, &mut s).unwrap();
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        kdf(&master, &salt, LABEL_RTP_AUTH, &mut auth).unwrap();
        assert_eq!(auth.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    /// Both sides of a DTLS session take opposite halves of the keying material, and a refused profile or length
    /// gives `None`.
    #[test]
    fn halves_and_refusals() {
        let material: Vec<u8> = (0..2 * (16 + 12)).map(|i| i as u8).collect();
        let a = SrtpTx::new(&material, SrtpProfile::AEAD_AES_128_GCM, true).unwrap();
        let b = SrtpTx::new(&material, SrtpProfile::AEAD_AES_128_GCM, false).unwrap();
        let mut pa =
            [0x80u8, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut pb = pa;
        assert_eq!(a.protect(&mut pa, 12, 15, 7, 1), Some(31));
        assert_eq!(b.protect(&mut pb, 12, 15, 7, 1), Some(31));
        assert_ne!(pa, pb);
        assert!(SrtpTx::new(&material[1..], SrtpProfile::AEAD_AES_128_GCM, true).is_none());
        let mut short = [0u8; 20];
        assert!(a.protect(&mut short, 12, 15, 7, 1).is_none());
        assert!(a.protect(&mut short, 16, 15, 7, 1).is_none());
    }
}
