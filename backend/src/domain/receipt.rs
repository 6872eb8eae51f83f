//! Receipt numbers and check codes of parking sessions bought in the app, by card or by SMS
//! (a warden's cash slip has its own, stored with it). A session's number is its id
//! (`IP-00000042`); its code is derived from the id with the deployment's secret key
//! (HMAC-SHA256), so nothing more is stored, every node computes the same code, and codes
//! cannot be guessed from numbers.

use sha2::{Digest, Sha256};

/// What a session receipt's number starts with (no district code is `IP`).
pub const SESSION_PREFIX: &str = "IP-";

/// Letters and digits that cannot be misread on paper (no I, O, 0 or 1).
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A plate as receipts show it to whoever holds one: all but its last 3 characters hidden.
pub fn masked_plate(plate: &str) -> String {
    let n = plate.chars().count();
    plate.chars().enumerate().map(|(i, c)| if i + 3 < n { '•' } else { c }).collect()
}

/// The receipt number of session `id`.
pub fn session_number(id: i64) -> String {
    format!("{SESSION_PREFIX}{id:08}")
}

/// The session id a receipt number names, if it is a session's (`IP-` and digits).
pub fn parse_session_number(number: &str) -> Option<i64> {
    let digits = number.strip_prefix(SESSION_PREFIX)?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}

/// The check code printed with session `id`'s receipt: 8 characters of HMAC-SHA256(key,
/// `session-receipt:{id}`).
pub fn session_code(key: &[u8], id: i64) -> String {
    let mac = hmac_sha256(key, format!("session-receipt:{id}").as_bytes());
    mac.iter().take(8).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than a block.
        let mac = hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }

    #[test]
    fn numbers_and_codes() {
        assert_eq!(session_number(42), "IP-00000042");
        assert_eq!(parse_session_number("IP-00000042"), Some(42));
        for bad in ["IP-", "IP-4x", "HK-20261201-000042", "ip-42", "IP-0", "IP-+4"] {
            assert_eq!(parse_session_number(bad), None, "{bad}");
        }
        let (a, b) = (session_code(b"key one", 42), session_code(b"key two", 42));
        assert_eq!(a.len(), 8);
        assert_ne!(a, b, "the code depends on the key");
        assert_ne!(session_code(b"key one", 43), a, "and on the session");
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)), "{a}");
    }
}
