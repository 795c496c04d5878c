//! Key rules, shared by every backend (a pure module: no I/O).
//!
//! A key is UTF-8 (guaranteed by `&str`), not empty, at most the backend's maximum length, has
//! no NUL and no leading `/`. These are S3's rules plus the two that make keys usable as paths.
//! The maximum is a backend capability (`StoreFeatures::max_key_len`): [`MAX_KEY_LEN`] (4,096
//! bytes, Linux's PATH_MAX: any path the kernel accepts, at most 4,095 bytes, is a key, and so
//! is its directory marker `path/`) for the local and memory stores, [`S3_MAX_KEY_LEN`]
//! (1,024) for S3. The local store also relies on "no NUL": it
//! separates a key from its version id with a 0 byte.

use std::fmt;

/// Longest key in bytes of the local and memory stores (Linux's PATH_MAX: a path of up to
/// 4,095 bytes plus the `/` of its directory marker), and the longest any backend accepts.
pub const MAX_KEY_LEN: usize = 4096;

/// Longest key in bytes of S3 and S3-compatible stores.
pub const S3_MAX_KEY_LEN: usize = 1024;

/// Why a key was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Empty,
    TooLong {
        len: usize,
        max: usize,
    },
    Nul,
    LeadingSlash,
    /// The key lies under a prefix the backend keeps for itself (S3's `.objfs/`).
    Reserved {
        prefix: &'static str,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "key is empty"),
            KeyError::TooLong { len, max } => {
                write!(f, "key is {len} bytes, longer than {max}")
            }
            KeyError::Nul => write!(f, "key contains a NUL byte"),
            KeyError::LeadingSlash => write!(f, "key starts with '/'"),
            KeyError::Reserved { prefix } => {
                write!(
                    f,
                    "keys under {prefix} are reserved for the store's own records"
                )
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Checks `key` against the key rules with the longest key of the local and memory stores.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    check_key_max(key, MAX_KEY_LEN)
}

/// Checks `key` against the key rules, for a backend whose longest key is `max` bytes.
pub fn check_key_max(key: &str, max: usize) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > max {
        return Err(KeyError::TooLong {
            len: key.len(),
            max,
        });
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

/// Longest record name in bytes (see [`crate::ObjectStore::get_record`]).
pub const MAX_RECORD_NAME_LEN: usize = 512;

/// Checks a record name: 1..=[`MAX_RECORD_NAME_LEN`] bytes of ASCII letters, digits and
/// `/ . _ - @ : +`, not starting with `/`. Record names are chosen by code (`snapshot/NAME`,
/// `retention`, `restore/ID`), but a snapshot's name comes from the user, so the rule is
/// strict enough to be a file name and an S3 key under any backend.
pub fn check_record_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_RECORD_NAME_LEN {
        return Err(format!(
            "record name {:?} is not 1..={MAX_RECORD_NAME_LEN} bytes",
            name.chars().take(64).collect::<String>()
        ));
    }
    if name.starts_with('/') {
        return Err(format!("record name {name:?} starts with '/'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._-@:+".contains(*c)))
    {
        return Err(format!("record name {name:?} contains {c:?}"));
    }
    Ok(())
}

/// [`check_record_name`] as a store error (`InvalidArgument`).
pub fn validate_record_name(name: &str) -> crate::Result<()> {
    check_record_name(name).map_err(crate::StoreError::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert_eq!(check_key(""), Err(KeyError::Empty));
        assert_eq!(check_key("/a"), Err(KeyError::LeadingSlash));
        assert_eq!(check_key("a\0b"), Err(KeyError::Nul));
        assert!(check_key(&"x".repeat(4096)).is_ok());
        assert_eq!(
            check_key(&"x".repeat(4097)),
            Err(KeyError::TooLong {
                len: 4097,
                max: 4096
            })
        );
        assert!(check_key_max(&"x".repeat(1024), S3_MAX_KEY_LEN).is_ok());
        assert_eq!(
            check_key_max(&"x".repeat(1025), S3_MAX_KEY_LEN),
            Err(KeyError::TooLong {
                len: 1025,
                max: 1024
            })
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
