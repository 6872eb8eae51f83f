//! Opaque bearer tokens for staff: random, shown once, stored only as SHA-256. Staff
//! passwords (handheld logins) are hashed with argon2id.

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

/// Shortest staff password.
pub const PASSWORD_MIN: usize = 10;
/// Longest staff password (argon2 takes any length; this bounds the work per request).
pub const PASSWORD_MAX: usize = 128;

/// Hashes a password to an argon2id PHC string (random salt). CPU-heavy: call it from
/// `spawn_blocking`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string. CPU-heavy: call it from `spawn_blocking`.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// A hash to verify against when the username is unknown, so that an unknown username
/// costs the same time as a wrong password (no username enumeration by timing).
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("iparking-no-such-user").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterx", &h));
        assert!(!verify_password("correct horse battery", "not a phc string"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
        assert!(!verify_password("anything", dummy_password_hash()));
    }

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
