//! Opaque bearer tokens for staff: random, shown once, stored only as SHA-256.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of staff tokens, so a leaked one is recognisable in a secret scanner.
pub const STAFF_TOKEN_PREFIX: &str = "ipk_staff_";

/// A new token: the prefix and 32 random bytes in hex.
pub fn new_staff_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{STAFF_TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// What is stored and looked up: the SHA-256 of the token, in hex. The token has 256
/// bits of entropy, so a fast hash is enough (no password stretching needed).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_staff_token();
        let b = new_staff_token();
        assert_ne!(a, b);
        assert!(a.starts_with(STAFF_TOKEN_PREFIX));
        assert_eq!(a.len(), STAFF_TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert!(!token_hash(&a).contains(&a[STAFF_TOKEN_PREFIX.len()..]));
    }
}
