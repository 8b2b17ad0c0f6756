//! Secrets: password hashing (argon2id, with LoopBack 3's bcrypt hashes still accepted),
//! access-token generation and the hash tokens are stored under, and constant-time
//! comparison. Hashing runs on the blocking pool behind a semaphore so a burst of logins
//! cannot take every core from other requests.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// LoopBack 3's limit (bcrypt's), kept so existing clients see the same errors.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Length of an access token id, as LoopBack 3 makes them.
pub const TOKEN_LENGTH: usize = 64;

/// OWASP's recommended argon2id parameters: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    Mismatch,
    Match,
    /// A match against a legacy (bcrypt) or weaker hash: store this new hash.
    MatchRehash(String),
}

/// Runs password hashing off the async workers, a bounded number at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| e.to_string())?
    }

    pub async fn verify(&self, password: String, stored: Option<String>) -> PasswordCheck {
        let Ok(_permit) = self.permits.acquire().await else {
            return PasswordCheck::Mismatch;
        };
        tokio::task::spawn_blocking(move || match stored {
            Some(hash) => verify_password(&password, &hash),
            None => {
                // Spend the same work as a real check so an unknown account cannot be
                // told apart by timing.
                let _ = verify_password(&password, dummy_hash());
                PasswordCheck::Mismatch
            }
        })
        .await
        .unwrap_or(PasswordCheck::Mismatch)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("portcullis-timing-equaliser").unwrap_or_default())
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `value` is already a password hash LoopBack 3 would store as is.
pub fn is_bcrypt_hash(value: &str) -> bool {
    (value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$"))
        && value.len() == 60
}

pub fn verify_password(password: &str, stored: &str) -> PasswordCheck {
    if is_bcrypt_hash(stored) {
        return match bcrypt::verify(password, stored) {
            Ok(true) => match hash_password(password) {
                Ok(new_hash) => PasswordCheck::MatchRehash(new_hash),
                Err(_) => PasswordCheck::Match,
            },
            _ => PasswordCheck::Mismatch,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return PasswordCheck::Mismatch;
    };
    if argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return PasswordCheck::Mismatch;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && parsed.params.get_decimal("m") == Some(19 * 1024)
        && parsed.params.get_decimal("t") == Some(2);
    if current {
        PasswordCheck::Match
    } else {
        match hash_password(password) {
            Ok(h) => PasswordCheck::MatchRehash(h),
            Err(_) => PasswordCheck::Match,
        }
    }
}

/// A new access token id: 64 characters from `A-Z a-z 0-9`, uniformly drawn from a
/// cryptographically secure generator (LoopBack 3's alphabet, without its modulo bias).
pub fn new_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LENGTH)
}

/// The key a token is stored under: only this hash reaches the database, so a leaked
/// table holds no usable token.
pub fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random secret for email verification links (64 bytes, hex), as LoopBack makes them.
pub fn new_verification_token() -> String {
    let mut bytes = [0u8; 64];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    hex::encode(bytes)
}

/// Compares two secrets without leaking where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_and_wrong_password() {
        let h = hash_password("opensesame").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify_password("opensesame", &h), PasswordCheck::Match);
        assert_eq!(verify_password("opensesamE", &h), PasswordCheck::Mismatch);
    }

    #[test]
    fn loopback_bcrypt_hashes_verify_and_ask_for_a_rehash() {
        let legacy = bcrypt::hash("password", 4).expect("bcrypt");
        assert!(is_bcrypt_hash(&legacy));
        match verify_password("password", &legacy) {
            PasswordCheck::MatchRehash(new) => assert!(new.starts_with("$argon2id$")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(verify_password("wrong", &legacy), PasswordCheck::Mismatch);
    }

    #[test]
    fn tokens_are_64_alphanumerics_and_stored_hashed() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_token(), t);
        let key = token_key(&t);
        assert_eq!(key.len(), 64);
        assert_ne!(key, t);
        assert!(secrets_equal(&t, &t.clone()));
        assert!(!secrets_equal(&t, &new_token()));
    }
}
