//! Pure translations between the store's values and S3's, free of I/O so they are unit-tested:
//! user-metadata names and values (S3 lowercases names, strips `x-amz-meta-` and carries values
//! in HTTP headers), keys under the store's prefix, the `x-amz-copy-source` header, HTTP byte
//! ranges, ETags and times.
//!
//! # Metadata names
//!
//! The filesystem keeps POSIX attributes under s3fs's names (`x-amz-meta-mode`, ...): such a
//! name travels as the S3 user-metadata name after the prefix (`mode`, so the header is
//! `x-amz-meta-mode`, what s3fs and `aws s3` read). Every other name `N` (`x-objfs-mtime-nsec`,
//! names a caller made up) travels as `objfs.N`, and so does an `x-amz-meta-` name whose rest
//! starts with `objfs.`: the mapping is a bijection, and metadata written by other tools
//! (`x-amz-meta-foo`) reads back as `x-amz-meta-foo`. Names must be lower-case HTTP tokens
//! (S3 lowercases them).
//!
//! # Metadata values
//!
//! A value that an HTTP header cannot carry unchanged (non-ASCII, control characters, leading or
//! trailing blanks, the empty string) or that looks encoded (`=?`) travels RFC 2047-encoded,
//! `=?UTF-8?B?<base64>?=`, the form AWS itself uses for such values; it is decoded on the way
//! back.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, StoreError};
use crate::types::Metadata;

/// The header prefix of S3 user metadata, as the filesystem names its attributes.
pub const AMZ_META: &str = "x-amz-meta-";
/// The S3 name prefix of store names that are not `x-amz-meta-` names.
const RAW: &str = "objfs.";
const ENC_HEAD: &str = "=?UTF-8?B?";
const ENC_TAIL: &str = "?=";

/// Whether `c` may appear in an HTTP header name (a token character), lower case only.
fn token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The S3 user-metadata name of a store metadata name.
pub fn name_to_s3(name: &str) -> Result<String> {
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(StoreError::InvalidArgument(format!(
            "metadata name {:?} is not a lower-case HTTP token (S3 lowercases names)",
            name.chars().take(64).collect::<String>()
        )));
    }
    match name.strip_prefix(AMZ_META) {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with(RAW) && rest != super::blocksum::META_NAME =>
        {
            Ok(rest.to_string())
        }
        _ => Ok(format!("{RAW}{name}")),
    }
}

/// The store metadata name of an S3 user-metadata name (the inverse of [`name_to_s3`]).
pub fn name_from_s3(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.strip_prefix(RAW) {
        Some(raw) if !raw.is_empty() => raw.to_string(),
        _ => format!("{AMZ_META}{name}"),
    }
}

/// The header form of a metadata value.
pub fn value_to_s3(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', '\t'])
        && !value.ends_with([' ', '\t'])
        && !value.starts_with("=?");
    if plain {
        value.to_string()
    } else {
        format!(
            "{ENC_HEAD}{}{ENC_TAIL}",
            aws_smithy_types::base64::encode(value)
        )
    }
}

/// The value of a header form (the inverse of [`value_to_s3`]); a value that is not our
/// encoding, or does not decode to UTF-8, is returned as it came.
pub fn value_from_s3(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    if lower.starts_with(&ENC_HEAD.to_ascii_lowercase()) && value.ends_with(ENC_TAIL) {
        let inner = &value[ENC_HEAD.len()..value.len() - ENC_TAIL.len()];
        if let Ok(bytes) = aws_smithy_types::base64::decode(inner) {
            if let Ok(text) = String::from_utf8(bytes) {
                return text;
            }
        }
    }
    value.to_string()
}

/// Store metadata as S3 user metadata.
pub fn metadata_to_s3(meta: &Metadata) -> Result<HashMap<String, String>> {
    meta.iter()
        .map(|(k, v)| Ok((name_to_s3(k)?, value_to_s3(v))))
        .collect()
}

/// S3 user metadata as store metadata (the block checksums, the backend's own, left out).
pub fn metadata_from_s3(meta: Option<&HashMap<String, String>>) -> Metadata {
    meta.into_iter()
        .flatten()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(super::blocksum::META_NAME))
        .map(|(k, v)| (name_from_s3(k), value_from_s3(v)))
        .collect()
}

/// The normalised store prefix inside a bucket: empty, or ending in `/`.
pub fn normalize_prefix(prefix: &str) -> Result<String> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    crate::key::check_key_max(p, crate::key::S3_MAX_KEY_LEN).map_err(|reason| {
        StoreError::InvalidKey {
            key: p.chars().take(64).collect(),
            reason,
        }
    })?;
    Ok(format!("{p}/"))
}

/// Parses `s3://BUCKET[/PREFIX]` into the bucket and the normalised prefix.
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        StoreError::InvalidArgument(format!("{url:?} is not an s3://BUCKET[/PREFIX] URL"))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid_bucket {
        return Err(StoreError::InvalidArgument(format!(
            "{bucket:?} in {url:?} is not a bucket name (3 to 63 of a-z 0-9 . -)"
        )));
    }
    Ok((bucket.to_string(), normalize_prefix(prefix)?))
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved characters and
/// `/`).
pub fn encode_copy_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() * 3);
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `x-amz-copy-source` value of a full key (and version).
pub fn copy_source(bucket: &str, full_key: &str, version: Option<&str>) -> String {
    let mut s = format!("{bucket}/{}", encode_copy_key(full_key));
    if let Some(v) = version {
        s.push_str("?versionId=");
        s.push_str(&encode_copy_key(v));
    }
    s
}

/// The HTTP `Range` value of a non-empty byte range.
pub fn http_range(r: &Range<u64>) -> String {
    format!("bytes={}-{}", r.start, r.end - 1)
}

/// Parses `Content-Range: bytes A-B/TOTAL` into (A..B+1, TOTAL).
pub fn parse_content_range(v: &str) -> Option<(Range<u64>, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    let total: u64 = total.trim().parse().ok()?;
    (a <= b && b < total).then_some((a..b + 1, total))
}

/// Whether `marker` is a common prefix of a listing of `prefix` by `delimiter` (it ends at
/// the first delimiter after the prefix): a page that ended on it resumes after everything
/// under it.
pub fn rolls_up(prefix: &str, delimiter: Option<&str>, marker: &str) -> bool {
    let Some(d) = delimiter.filter(|d| !d.is_empty()) else {
        return false;
    };
    let Some(rest) = marker.strip_prefix(prefix) else {
        return false;
    };
    rest.find(d).is_some_and(|i| i + d.len() == rest.len())
}

/// An ETag without its quotes (S3 quotes them).
pub fn clean_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

/// The quoted form for `If-Match`.
pub fn quoted_etag(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// An S3 time as a `SystemTime`, truncated to whole seconds: HEAD and GET carry HTTP dates
/// (seconds), listings milliseconds; truncating makes every operation report the same time.
pub fn time_from_s3(t: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    match t {
        Some(t) if t.secs() >= 0 => UNIX_EPOCH + Duration::from_secs(t.secs() as u64),
        _ => UNIX_EPOCH,
    }
}

/// An S3 time in milliseconds since the epoch (for ordering versions), 0 when absent.
pub fn millis_from_s3(t: Option<&aws_sdk_s3::primitives::DateTime>) -> i64 {
    t.map(|t| t.to_millis().unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The text of the first `<tag>...</tag>` in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// A part as ListParts gives it: (number, etag, size).
pub type ListedPart = (u32, String, u64);

/// A ListParts answer read by hand, for servers whose answer the SDK does not parse (moto
/// names its root element `ListPartsResponse`): (parts as (number, etag, size), next marker
/// when truncated).
pub fn parse_list_parts(xml: &str) -> Option<(Vec<ListedPart>, Option<String>)> {
    let mut parts = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<Part>") {
        let body = &rest[i + 6..];
        let end = body.find("</Part>")?;
        let part = &body[..end];
        let n = element(part, "PartNumber")?.trim().parse().ok()?;
        let etag = element(part, "ETag")?.replace("&quot;", "\"");
        let size = element(part, "Size")?.trim().parse().ok()?;
        parts.push((n, etag.trim_matches('"').to_string(), size));
        rest = &body[end..];
    }
    let truncated = element(xml, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let next = element(xml, "NextPartNumberMarker")
        .filter(|_| truncated)
        .map(|m| m.trim().to_string());
    Some((parts, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (store, s3) in [
            ("x-amz-meta-mode", "mode"),
            ("x-amz-meta-mtime", "mtime"),
            ("x-objfs-mtime-nsec", "objfs.x-objfs-mtime-nsec"),
            ("empty", "objfs.empty"),
            ("x-amz-meta-objfs.x", "objfs.x-amz-meta-objfs.x"),
            ("x-amz-meta-", "objfs.x-amz-meta-"),
            // The backend's own entry is not a store name's.
            ("x-amz-meta-objfs-blocks", "objfs.x-amz-meta-objfs-blocks"),
        ] {
            assert_eq!(name_to_s3(store).unwrap(), s3, "{store}");
            assert_eq!(name_from_s3(s3), store, "{s3}");
        }
        // Written by another tool (S3 lowercases).
        assert_eq!(name_from_s3("Foo"), "x-amz-meta-foo");
        let mut m = HashMap::new();
        m.insert("objfs-blocks".to_string(), "1:20:0:x:".to_string());
        m.insert("mode".to_string(), "33188".to_string());
        let back = metadata_from_s3(Some(&m));
        assert_eq!(back.keys().collect::<Vec<_>>(), ["x-amz-meta-mode"]);
        assert!(name_to_s3("Upper").is_err());
        assert!(name_to_s3("sp ace").is_err());
        assert!(name_to_s3("").is_err());
    }

    #[test]
    fn values_round_trip() {
        for v in [
            "33188",
            "",
            " lead",
            "trail\t",
            "ünïcödé ✓ \"quoted\" = ; \n newline",
            "=?UTF-8?B?eA==?=",
            "a=b; c",
        ] {
            let enc = value_to_s3(v);
            assert!(enc.bytes().all(|b| (0x20..0x7f).contains(&b)), "{enc:?}");
            assert_eq!(value_from_s3(&enc), v, "{v:?}");
        }
        assert_eq!(value_to_s3("1700000000"), "1700000000");
        // Foreign values that only look encoded come back as they are.
        assert_eq!(value_from_s3("=?UTF-8?B?***?="), "=?UTF-8?B?***?=");
    }

    #[test]
    fn urls_and_prefixes() {
        assert_eq!(parse_url("s3://bkt").unwrap(), ("bkt".into(), "".into()));
        assert_eq!(
            parse_url("s3://bkt/a/b/").unwrap(),
            ("bkt".into(), "a/b/".into())
        );
        assert_eq!(parse_url("s3://bkt/a").unwrap().1, "a/");
        assert!(parse_url("http://bkt").is_err());
        assert!(parse_url("s3://B").is_err());
        assert!(parse_url("s3://").is_err());
        assert_eq!(normalize_prefix("/x//").unwrap(), "x/");
    }

    #[test]
    fn list_parts_by_hand() {
        let xml = "<ListPartsResponse><IsTruncated>true</IsTruncated>\
            <NextPartNumberMarker>2</NextPartNumberMarker>\
            <Part><PartNumber>1</PartNumber><ETag>&quot;ab&quot;</ETag><Size>5</Size></Part>\
            <Part><PartNumber>2</PartNumber><ETag>\"cd\"</ETag><Size>7</Size></Part>\
            </ListPartsResponse>";
        let (parts, next) = parse_list_parts(xml).unwrap();
        assert_eq!(
            parts,
            vec![(1, "ab".to_string(), 5), (2, "cd".to_string(), 7)]
        );
        assert_eq!(next.as_deref(), Some("2"));
    }

    #[test]
    fn copy_sources_and_ranges() {
        assert_eq!(
            copy_source("b", "a b/ü?", Some("v1")),
            "b/a%20b/%C3%BC%3F?versionId=v1"
        );
        assert_eq!(http_range(&(0..10)), "bytes=0-9");
        assert_eq!(parse_content_range("bytes 3-6/1000"), Some((3..7, 1000)));
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(clean_etag(Some("\"abc-2\"")), "abc-2");
        assert!(rolls_up("p/", Some("/"), "p/a/"));
        assert!(!rolls_up("p/", Some("/"), "p/a/b"));
        assert!(!rolls_up("p/", None, "p/a/"));
    }
}
