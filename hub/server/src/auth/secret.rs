//! API keys at rest: a key id and a secret are made here, and only a salted
//! argon2id hash of the secret is kept. Checking a secret recomputes the
//! hash and compares it in constant time.
//!
//! argon2id is slow on purpose (about 20 ms and 19 MiB here), so a stolen
//! database does not give the secrets away; `Auth` remembers a fast digest
//! of secrets it has already checked so reconnecting devices do not pay it
//! every time.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// What the hub stores of one API key (CBOR in the log's `security` table,
/// under its id). The secret itself is nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    pub principal: String,
    pub admin: bool,
    pub description: String,
    pub created_ms: i64,
    pub hash: SecretHash,
}

/// An argon2id hash with what is needed to recompute it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash {
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub hash: Vec<u8>,
    /// argon2 memory (KiB), passes and lanes.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

/// OWASP's argon2id setting (19 MiB, 2 passes, 1 lane).
const M_KIB: u32 = 19 * 1024;
const T: u32 = 2;
const P: u32 = 1;
const HASH_LEN: usize = 32;

/// `n` random bytes from the operating system.
fn random<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key id (`ck_` and 16 hex digits) and secret (64 hex digits, 256
/// bits).
pub fn new_key() -> Result<(String, String), AuthError> {
    Ok((format!("ck_{}", hex(&random::<8>()?)), hex(&random::<32>()?)))
}

impl SecretHash {
    /// Hashes `secret` with a fresh salt.
    pub fn new(secret: &str) -> Result<SecretHash, AuthError> {
        let salt = random::<16>()?.to_vec();
        let hash = argon2id(secret, &salt, M_KIB, T, P)?;
        Ok(SecretHash { salt, hash, m_kib: M_KIB, t: T, p: P })
    }

    /// Whether `secret` is the one hashed (slow: the whole argon2id).
    pub fn verify(&self, secret: &str) -> bool {
        match argon2id(secret, &self.salt, self.m_kib, self.t, self.p) {
            Ok(hash) => hash.ct_eq(&self.hash).into(),
            Err(_) => false,
        }
    }
}

fn argon2id(secret: &str, salt: &[u8], m_kib: u32, t: u32, p: u32) -> Result<Vec<u8>, AuthError> {
    let params = Params::new(m_kib, t, p, Some(HASH_LEN)).map_err(|e| AuthError::Hash(e.to_string()))?;
    let mut out = vec![0u8; HASH_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(secret.as_bytes(), salt, &mut out)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(out)
}

/// A fast digest of a secret that has passed `verify`, kept in memory only.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two digests.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_hash_and_no_other() {
        let (id, secret) = new_key().unwrap();
        assert!(id.starts_with("ck_") && id.len() == 19, "{id}");
        assert_eq!(secret.len(), 64);
        let hash = SecretHash::new(&secret).unwrap();
        assert!(hash.verify(&secret));
        assert!(!hash.verify(&secret[1..]));
        assert!(!hash.verify(""));
        // Salted: the same secret hashes differently twice.
        assert_ne!(SecretHash::new(&secret).unwrap().hash, hash.hash);
        assert!(!hash.hash.windows(8).any(|w| secret.as_bytes().windows(8).any(|s| s == w)));
    }
}
