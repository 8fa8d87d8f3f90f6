//! Virtual key material: generation, the stored digest, the printable name.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new key: `sk-` and 32 random bytes as URL-safe text (43 characters), from rand's thread
/// generator (ChaCha12, seeded from the OS: a CSPRNG).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sk-{}", base64url(&bytes))
}

/// The stored form of a key: its SHA-256, hex. A key is never stored or logged in the clear.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// `sk-...abcd`: what listings show (LiteLLM's `key_name`).
pub fn display_name(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

/// A request names a key either in the clear (`sk-...`) or by its stored hash.
pub fn to_token(key_or_hash: &str) -> String {
    let k = key_or_hash.trim();
    if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
        k.to_ascii_lowercase()
    } else {
        hash(k)
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("sk-") && a.len() == 46, "{a}");
        assert_eq!(hash(&a).len(), 64);
        assert_eq!(to_token(&a), hash(&a));
        assert_eq!(to_token(&hash(&a)), hash(&a));
        assert_eq!(display_name("sk-abcdef1234"), "sk-...1234");
        assert_eq!(base64url(b"\xff\xff\xff"), "____");
    }
}
