//! Key rules, shared by every backend (a pure module: no I/O).
//!
//! A key is UTF-8 (guaranteed by `&str`), not empty, at most [`MAX_KEY_LEN`] bytes, has no NUL
//! and no leading `/`. These are S3's rules plus the two that make keys usable as paths. The
//! local store also relies on "no NUL": it separates a key from its version id with a 0 byte.

use std::fmt;

/// Longest key in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Why a key was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong { len: usize },
    Nul,
    LeadingSlash,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "key is empty"),
            KeyError::TooLong { len } => {
                write!(f, "key is {len} bytes, longer than {MAX_KEY_LEN}")
            }
            KeyError::Nul => write!(f, "key contains a NUL byte"),
            KeyError::LeadingSlash => write!(f, "key starts with '/'"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Checks `key` against the key rules.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong { len: key.len() });
    }
    if key.as_bytes().contains(&0) {
        return Err(KeyError::Nul);
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    Ok(())
}

/// Checks `key`, wrapping a failure into a [`crate::StoreError::InvalidKey`] whose message
/// shows at most the first 64 characters of the key.
pub fn validate(key: &str) -> crate::Result<()> {
    check_key(key).map_err(|reason| crate::StoreError::InvalidKey {
        key: key.chars().take(64).collect(),
        reason,
    })
}

/// Checks a prefix used for listing: it may be empty, but otherwise follows the key rules
/// except that it may be any length up to the key limit.
pub fn validate_prefix(prefix: &str) -> crate::Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate(prefix)
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when no such string exists (the prefix is all 0xFF bytes).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert_eq!(check_key(""), Err(KeyError::Empty));
        assert_eq!(check_key("/a"), Err(KeyError::LeadingSlash));
        assert_eq!(check_key("a\0b"), Err(KeyError::Nul));
        assert!(check_key(&"x".repeat(1024)).is_ok());
        assert_eq!(
            check_key(&"x".repeat(1025)),
            Err(KeyError::TooLong { len: 1025 })
        );
        assert!(check_key("a//b/ü/").is_ok());
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
