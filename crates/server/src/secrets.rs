//! Secrets: password hashing (argon2id, with LoopBack 3's bcrypt hashes still accepted),
//! access-token generation and the hash tokens are stored under, and constant-time
//! comparison. Hashing runs on a few dedicated threads that reuse their argon2 memory,
//! so a burst of logins can take neither every core nor hundreds of MiB.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// Runs password hashing on a few dedicated threads, off the async workers. Each thread
/// keeps one argon2 memory area (19 MiB) and reuses it: allocating it per hash on the
/// blocking pool made the allocator keep hundreds of MiB after a burst of logins. The
/// thread count also bounds how much CPU a login storm can take from other requests.
#[derive(Clone)]
pub struct Hasher {
    jobs: std::sync::mpsc::Sender<Job>,
}

enum Job {
    Hash(String, tokio::sync::oneshot::Sender<Result<String, String>>),
    Verify(
        String,
        Option<String>,
        tokio::sync::oneshot::Sender<PasswordCheck>,
    ),
}

impl Hasher {
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-hash-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(Job::Hash(password, reply)) => {
                                let _ = reply.send(hash_with(&password, &mut memory));
                            }
                            Ok(Job::Verify(password, stored, reply)) => {
                                let check = match stored {
                                    Some(hash) => verify_with(&password, &hash, &mut memory),
                                    None => {
                                        // Spend the same work as a real check so an unknown
                                        // account cannot be told apart by timing.
                                        let _ = verify_with(&password, dummy_hash(), &mut memory);
                                        PasswordCheck::Mismatch
                                    }
                                };
                                let _ = reply.send(check);
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Self { jobs: tx }
    }

    pub async fn hash(&self, password: String) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Job::Hash(password, tx))
            .map_err(|_| "password hashing is unavailable".to_string())?;
        rx.await
            .map_err(|_| "password hashing is unavailable".to_string())?
    }

    pub async fn verify(&self, password: String, stored: Option<String>) -> PasswordCheck {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.jobs.send(Job::Verify(password, stored, tx)).is_err() {
            return PasswordCheck::Mismatch;
        }
        rx.await.unwrap_or(PasswordCheck::Mismatch)
    }
}

/// OWASP's parameters as numbers: memory in KiB (= argon2 blocks), iterations, lanes.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// argon2id into `memory`, which is grown once to the blocks the parameters need.
fn argon2_into(
    password: &[u8],
    salt: &[u8],
    m: u32,
    t: u32,
    p: u32,
    out: &mut [u8],
    memory: &mut Vec<argon2::Block>,
) -> Result<(), String> {
    let params = Params::new(m, t, p, Some(out.len())).map_err(|e| e.to_string())?;
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
        .map_err(|e| e.to_string())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), hashed in reused memory.
fn hash_with(password: &str, memory: &mut Vec<argon2::Block>) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut salt[..]);
    let mut out = [0u8; 32];
    argon2_into(
        password.as_bytes(),
        &salt,
        M_COST,
        T_COST,
        P_COST,
        &mut out,
        memory,
    )?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let hash = argon2::password_hash::Output::new(&out).map_err(|e| e.to_string())?;
    Ok(format!(
        "$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${salt}${hash}"
    ))
}

/// Like [`verify_password`], with argon2id work done in reused memory.
fn verify_with(password: &str, stored: &str, memory: &mut Vec<argon2::Block>) -> PasswordCheck {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return verify_password(password, stored);
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return verify_password(password, stored);
    }
    let param = |k: &str| parsed.params.get_decimal(k);
    let (Some(m), Some(t), Some(p), Some(salt), Some(expected)) =
        (param("m"), param("t"), param("p"), parsed.salt, parsed.hash)
    else {
        return PasswordCheck::Mismatch;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return PasswordCheck::Mismatch;
    };
    let mut out = vec![0u8; expected.len()];
    if argon2_into(password.as_bytes(), salt, m, t, p, &mut out, memory).is_err() {
        return PasswordCheck::Mismatch;
    }
    if !bool::from(out.as_slice().ct_eq(expected.as_bytes())) {
        return PasswordCheck::Mismatch;
    }
    if (m, t, p) == (M_COST, T_COST, P_COST) {
        PasswordCheck::Match
    } else {
        match hash_with(password, memory) {
            Ok(h) => PasswordCheck::MatchRehash(h),
            Err(_) => PasswordCheck::Match,
        }
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
    fn reused_memory_hashes_agree_with_the_reference_implementation() {
        let mut memory = Vec::new();
        let ours = hash_with("opensesame", &mut memory).expect("hash");
        assert_eq!(
            verify_password("opensesame", &ours),
            PasswordCheck::Match,
            "{ours}"
        );
        assert_eq!(verify_password("wrong", &ours), PasswordCheck::Mismatch);
        let theirs = hash_password("opensesame").expect("hash");
        assert_eq!(
            verify_with("opensesame", &theirs, &mut memory),
            PasswordCheck::Match
        );
        assert_eq!(
            verify_with("opensesamE", &theirs, &mut memory),
            PasswordCheck::Mismatch
        );
        let legacy = bcrypt::hash("opensesame", 4).expect("bcrypt");
        assert!(matches!(
            verify_with("opensesame", &legacy, &mut memory),
            PasswordCheck::MatchRehash(_)
        ));
        assert_eq!(memory.len(), 19 * 1024, "one memory area, reused");
    }

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
