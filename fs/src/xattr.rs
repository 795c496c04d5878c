//! Extended attributes <-> object metadata.
//!
//! Only the `user.` namespace is stored. `user.NAME = VALUE` is kept in the object's metadata
//! as `x-objfs-xattr-<enc(NAME)>` where `enc` keeps `a-z 0-9 . _ -` and writes every other
//! byte as `%XX` (upper-case hex), so the metadata name stays lower-case ASCII whatever the
//! attribute name is. The value is stored as is when it is printable ASCII (0x20..=0x7e) and
//! does not start with `b64:`; otherwise it is `b64:` followed by standard base64 (with `=`
//! padding). Other namespaces (`security.`, `trusted.`, `system.`: POSIX ACLs, SELinux labels)
//! are not supported: reading, writing or removing a name there answers ENOTSUP, as a
//! filesystem mounted without ACLs or labels does, so that tools (GNU `ls -l`, `cp -a`, libacl)
//! stop asking for them on this filesystem after the first answer.

use objfs_store::Metadata;

use crate::error::{FsError, FsResult};

/// Prefix of the metadata names that hold extended attributes.
pub const XATTR_PREFIX: &str = "x-objfs-xattr-";
/// The one namespace stored.
pub const USER_NS: &str = "user.";
/// Largest value accepted (Linux's XATTR_SIZE_MAX).
pub const MAX_VALUE: usize = 65536;
const B64_TAG: &str = "b64:";

/// The metadata name for the attribute `name` (which includes its `user.` namespace).
pub fn meta_name(name: &str) -> String {
    let mut out = String::with_capacity(XATTR_PREFIX.len() + name.len());
    out.push_str(XATTR_PREFIX);
    for &b in name.as_bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The attribute name stored under metadata name `meta`, if it is one.
pub fn attr_name(meta: &str) -> Option<String> {
    let enc = meta.strip_prefix(XATTR_PREFIX)?;
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a value for metadata.
pub fn encode_value(v: &[u8]) -> String {
    let printable = v.iter().all(|b| (0x20..=0x7e).contains(b));
    if printable && !v.starts_with(B64_TAG.as_bytes()) {
        // Printable ASCII is valid UTF-8.
        String::from_utf8_lossy(v).into_owned()
    } else {
        format!("{B64_TAG}{}", base64_encode(v))
    }
}

/// Decodes a value from metadata.
pub fn decode_value(s: &str) -> FsResult<Vec<u8>> {
    match s.strip_prefix(B64_TAG) {
        Some(b) => base64_decode(b)
            .ok_or_else(|| FsError::Corrupt(format!("extended attribute value {s:?}"))),
        None => Ok(s.as_bytes().to_vec()),
    }
}

/// Whether `name` is in the one namespace stored (`user.`).
pub fn supported(name: &str) -> bool {
    name.starts_with(USER_NS)
}

/// The error for a name outside the `user.` namespace (ENOTSUP).
pub fn unsupported(name: &str) -> FsError {
    FsError::NotSupported(format!(
        "extended attribute {name:?}: only the user. namespace is stored"
    ))
}

/// Checks that `name` is a storable attribute name.
pub fn check_settable(name: &str) -> FsResult<()> {
    if !supported(name) || name.len() == USER_NS.len() {
        return Err(unsupported(name));
    }
    if name.len() > 255 {
        return Err(FsError::NameTooLong(name.to_string()));
    }
    Ok(())
}

/// Reads attribute `name` from `meta`.
pub fn get(meta: &Metadata, name: &str) -> FsResult<Vec<u8>> {
    if !supported(name) {
        return Err(unsupported(name));
    }
    match meta.get(&meta_name(name)) {
        Some(v) => decode_value(v),
        None => Err(FsError::NoAttr(name.to_string())),
    }
}

/// `flags` as in setxattr(2): XATTR_CREATE fails when it exists, XATTR_REPLACE when not.
pub fn set(meta: &mut Metadata, name: &str, value: &[u8], flags: i32) -> FsResult<()> {
    check_settable(name)?;
    if value.len() > MAX_VALUE {
        return Err(FsError::Errno(
            libc::E2BIG,
            format!("extended attribute value of {} bytes", value.len()),
        ));
    }
    let key = meta_name(name);
    let exists = meta.contains_key(&key);
    if flags & libc::XATTR_CREATE != 0 && exists {
        return Err(FsError::Exists(name.to_string()));
    }
    if flags & libc::XATTR_REPLACE != 0 && !exists {
        return Err(FsError::NoAttr(name.to_string()));
    }
    meta.insert(key, encode_value(value));
    Ok(())
}

/// Removes attribute `name`.
pub fn remove(meta: &mut Metadata, name: &str) -> FsResult<()> {
    if !supported(name) {
        return Err(unsupported(name));
    }
    match meta.remove(&meta_name(name)) {
        Some(_) => Ok(()),
        None => Err(FsError::NoAttr(name.to_string())),
    }
}

/// The names, each followed by a NUL, as listxattr(2) returns them.
pub fn list(meta: &Metadata) -> Vec<u8> {
    let mut out = Vec::new();
    for k in meta.keys() {
        if let Some(name) = attr_name(k) {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len().div_ceil(3) * 4);
    for chunk in v.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for n in ["user.a", "user.Mixed Case/ü", "user.x%y"] {
            let m = meta_name(n);
            assert!(m
                .bytes()
                .all(|b| !b.is_ascii_uppercase() || m.contains('%')));
            assert_eq!(attr_name(&m).as_deref(), Some(n));
        }
    }

    #[test]
    fn values_roundtrip() {
        for v in [
            &b"hello"[..],
            b"",
            b"\0\x01\xff",
            b"b64:looks encoded",
            b"a",
            b"ab",
            b"abc",
            b"abcd",
        ] {
            let e = encode_value(v);
            assert_eq!(decode_value(&e).ok().as_deref(), Some(v));
        }
        assert_eq!(encode_value(b"plain text"), "plain text");
    }

    #[test]
    fn flags() {
        let mut m = Metadata::new();
        assert!(set(&mut m, "user.a", b"1", libc::XATTR_REPLACE).is_err());
        assert!(set(&mut m, "user.a", b"1", libc::XATTR_CREATE).is_ok());
        assert!(set(&mut m, "user.a", b"2", libc::XATTR_CREATE).is_err());
        assert!(matches!(
            set(&mut m, "security.x", b"2", 0),
            Err(FsError::NotSupported(_))
        ));
        assert!(matches!(
            get(&m, "security.selinux"),
            Err(FsError::NotSupported(_))
        ));
        assert!(matches!(
            remove(&mut m, "system.posix_acl_access"),
            Err(FsError::NotSupported(_))
        ));
        assert_eq!(list(&m), b"user.a\0");
        assert!(remove(&mut m, "user.a").is_ok());
        assert!(matches!(get(&m, "user.a"), Err(FsError::NoAttr(_))));
    }
}
