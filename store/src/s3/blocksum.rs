//! Block checksums of the objects the S3 backend writes with one PutObject, so that a GET
//! body whose bytes were altered (at rest on the server, or on the way) is an error, never
//! data: TCP and TLS check nothing end to end, and a server's own full-object checksum
//! covers only a read of the whole object, while the filesystem reads 1 MiB ranges.
//!
//! A PutObject carries, in the user-metadata entry `x-amz-meta-objfs-blocks`, the object's
//! size, its MD5 (also sent as `Content-MD5`, so the server refuses a body altered on the way
//! up) and the BLAKE3 hash (first 96 bits) of every block of it (1 MiB, or larger so that
//! there are at most [`MAX_BLOCKS`]). A GET whose answer carries the entry, with an ETag equal
//! to that MD5 and the size it names, is fetched from the blocks' boundaries and each block
//! is checked before any of its bytes is returned. The ETag binds the entry to the bytes it
//! describes: a tool that rewrites the object and keeps its metadata (s3fs does) makes a new
//! ETag, and the object is then read unverified instead of failing. Pure, apart from the
//! stream adapters; docs/S3.md ("Integrity of reads") says what is and is not verified.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{Result, StoreError};
use crate::types::{ByteStream, ObjectInfo};

/// The S3 user-metadata name (after `x-amz-meta-`) of the entry.
pub const META_NAME: &str = "objfs-blocks";
/// The smallest block (and the filesystem's read unit): 1 MiB.
const MIN_BLOCK: u64 = 1 << 20;
/// Blocks at most per object (the entry stays under 600 bytes).
pub const MAX_BLOCKS: u64 = 32;
/// Bytes of each block's BLAKE3 hash kept.
const DIGEST_LEN: usize = 12;
/// S3's limit on the user metadata of an object (names and values): an entry that would go
/// over it is left out (the object is then read unverified).
pub const MAX_USER_METADATA: usize = 2048;
/// The entry's format.
const FORMAT: &str = "1";

/// The checksums of one object's blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums {
    /// Bytes per block (a power of two, at least 1 MiB); the last block may be shorter.
    pub block: u64,
    pub size: u64,
    /// MD5 of the whole object, lower-case hex (S3's ETag of a single PutObject).
    pub md5: String,
    digests: Vec<[u8; DIGEST_LEN]>,
}

/// The MD5 of `data`: raw bytes.
pub fn md5_of(data: &[u8]) -> [u8; 16] {
    use ::md5::Digest;
    let d = ::md5::Md5::digest(data);
    let mut out = [0u8; 16];
    out.copy_from_slice(d.as_slice());
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest(block: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&blake3::hash(block).as_bytes()[..DIGEST_LEN]);
    out
}

/// The block size for an object of `size` bytes.
fn block_for(size: u64) -> u64 {
    let mut b = MIN_BLOCK;
    while size.div_ceil(b) > MAX_BLOCKS {
        b *= 2;
    }
    b
}

impl BlockSums {
    /// The checksums of `data`, whose MD5 is `md5`.
    pub fn compute(data: &[u8], md5: &[u8; 16]) -> BlockSums {
        let block = block_for(data.len() as u64);
        BlockSums {
            block,
            size: data.len() as u64,
            md5: hex(md5),
            digests: data.chunks(block as usize).map(digest).collect(),
        }
    }

    /// The metadata value: `1:LOG2(BLOCK):SIZE:MD5:` then the base64 of every block's digest.
    pub fn encode(&self) -> String {
        let mut all = Vec::with_capacity(self.digests.len() * DIGEST_LEN);
        for d in &self.digests {
            all.extend_from_slice(d);
        }
        format!(
            "{FORMAT}:{}:{}:{}:{}",
            self.block.trailing_zeros(),
            self.size,
            self.md5,
            aws_smithy_types::base64::encode(&all)
        )
    }

    /// Parses a metadata value; `None` for anything that is not a well-formed entry of a
    /// format this build knows (the object is then read unverified).
    pub fn decode(s: &str) -> Option<BlockSums> {
        let mut f = s.trim().splitn(5, ':');
        if f.next()? != FORMAT {
            return None;
        }
        let log: u32 = f.next()?.parse().ok()?;
        let size: u64 = f.next()?.parse().ok()?;
        let md5 = f.next()?.to_ascii_lowercase();
        let raw = aws_smithy_types::base64::decode(f.next()?).ok()?;
        if !(20..=40).contains(&log) || md5.len() != 32 || raw.len() % DIGEST_LEN != 0 {
            return None;
        }
        let block = 1u64 << log;
        let digests: Vec<[u8; DIGEST_LEN]> = raw
            .chunks(DIGEST_LEN)
            .map(|c| {
                let mut d = [0u8; DIGEST_LEN];
                d.copy_from_slice(c);
                d
            })
            .collect();
        if digests.len() as u64 != size.div_ceil(block) {
            return None;
        }
        Some(BlockSums {
            block,
            size,
            md5,
            digests,
        })
    }

    /// Whether the entry describes the version a response names: its ETag (unquoted) is the
    /// MD5 and its size the size.
    pub fn describes(&self, etag: &str, size: u64) -> bool {
        self.size == size && etag.eq_ignore_ascii_case(&self.md5)
    }

    /// The smallest span of whole blocks that covers `want` (inside the object).
    pub fn span(&self, want: &Range<u64>) -> Range<u64> {
        let start = want.start / self.block * self.block;
        let end = want.end.div_ceil(self.block).saturating_mul(self.block);
        start.min(self.size)..end.min(self.size)
    }

    /// Whether the block starting at `offset` has these bytes.
    fn check(&self, offset: u64, data: &[u8]) -> bool {
        offset % self.block == 0
            && self
                .digests
                .get((offset / self.block) as usize)
                .is_some_and(|d| *d == digest(data))
    }
}

/// The entry to send with a PutObject of `data` (MD5 `md5`) beside `meta`, unless it would
/// take the user metadata over S3's limit.
pub fn entry_for(
    data: &[u8],
    md5: &[u8; 16],
    meta: &std::collections::HashMap<String, String>,
) -> Option<String> {
    let value = BlockSums::compute(data, md5).encode();
    let used: usize = meta.iter().map(|(k, v)| k.len() + v.len()).sum();
    (used + META_NAME.len() + value.len() <= MAX_USER_METADATA).then_some(value)
}

fn corrupt(what: &str, offset: u64) -> StoreError {
    StoreError::Corrupt {
        what: format!(
            "{what}: the block at byte {offset} does not match the checksum it was written with"
        ),
    }
}

fn short(what: &str, why: String) -> StoreError {
    StoreError::Unavailable {
        what: what.to_string(),
        reason: why,
    }
}

/// The bytes `span` (whole blocks, from [`BlockSums::span`]) of `body`, each block released
/// only once its checksum matched; a mismatch is [`StoreError::Corrupt`], a body of the wrong
/// length an error too.
pub fn verified(body: ByteStream, sums: BlockSums, span: Range<u64>, what: String) -> ByteStream {
    struct St {
        body: ByteStream,
        buf: BytesMut,
        next: u64,
        ready: VecDeque<Bytes>,
        done: bool,
    }
    let st = St {
        body,
        buf: BytesMut::new(),
        next: span.start,
        ready: VecDeque::new(),
        done: false,
    };
    let s = futures::stream::unfold(st, move |mut st| {
        let what = what.clone();
        let sums = sums.clone();
        let end = span.end;
        async move {
            loop {
                if let Some(b) = st.ready.pop_front() {
                    return Some((Ok(b), st));
                }
                if st.done {
                    return None;
                }
                match st.body.next().await {
                    Some(Ok(chunk)) => {
                        st.buf.extend_from_slice(&chunk);
                        while st.next < end {
                            let len = sums.block.min(end - st.next) as usize;
                            if st.buf.len() < len {
                                break;
                            }
                            let block = st.buf.split_to(len).freeze();
                            if !sums.check(st.next, &block) {
                                st.done = true;
                                return Some((Err(corrupt(&what, st.next)), st));
                            }
                            st.next += len as u64;
                            st.ready.push_back(block);
                        }
                        if st.next >= end && !st.buf.is_empty() {
                            st.done = true;
                            let e = short(&what, "the body is longer than asked".into());
                            return Some((Err(e), st));
                        }
                    }
                    Some(Err(e)) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    None => {
                        st.done = true;
                        if st.next != end || !st.buf.is_empty() {
                            let e = short(&what, format!("the body ended at byte {}", st.next));
                            return Some((Err(e), st));
                        }
                    }
                }
            }
        }
    });
    Box::pin(s)
}

/// `take` bytes of `body` after its first `skip`.
pub fn trimmed(body: ByteStream, skip: u64, take: u64) -> ByteStream {
    let s = futures::stream::unfold(
        (body, skip, take),
        |(mut body, mut skip, mut left)| async move {
            loop {
                if left == 0 {
                    return None;
                }
                match body.next().await? {
                    Ok(mut chunk) => {
                        let drop = skip.min(chunk.len() as u64) as usize;
                        skip -= drop as u64;
                        let _ = chunk.split_to(drop);
                        if chunk.is_empty() {
                            continue;
                        }
                        chunk.truncate(left.min(chunk.len() as u64) as usize);
                        left -= chunk.len() as u64;
                        return Some((Ok(chunk), (body, skip, left)));
                    }
                    Err(e) => return Some((Err(e), (body, 0, 0))),
                }
            }
        },
    );
    Box::pin(s)
}

/// The MD5 of a PutObject's body and its block checksums entry (blocksum.rs), if it fits
/// beside `meta`; hashed off the runtime's threads when the body is large.
pub async fn sums_of(
    body: Bytes,
    meta: std::collections::HashMap<String, String>,
) -> Result<([u8; 16], Option<String>)> {
    let small = body_is_small(&body);
    let work = move || {
        let md5 = md5_of(&body);
        let entry = entry_for(&body, &md5, &meta);
        (md5, entry)
    };
    if small {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Unavailable {
            what: "PutObject".into(),
            reason: format!("hashing the body failed: {e}"),
        })
}

/// The block checksums entry of a GET or HEAD answer's user metadata, as stored.
pub fn raw_entry(meta: Option<&std::collections::HashMap<String, String>>) -> Option<&str> {
    meta?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(META_NAME))
        .map(|(_, v)| v.as_str())
}

/// The block checksums of the version an answer describes: `None` without an entry, or with
/// one that does not describe these bytes (another ETag or size: a tool rewrote the object
/// and kept its metadata), which is then read unverified.
pub fn sums_in(
    meta: Option<&std::collections::HashMap<String, String>>,
    info: &ObjectInfo,
) -> Option<BlockSums> {
    let raw = raw_entry(meta)?;
    let sums = BlockSums::decode(raw);
    let fits = sums
        .as_ref()
        .is_some_and(|s| s.describes(&info.etag, info.size));
    if !fits {
        tracing::debug!(key = %info.key, etag = %info.etag, "block checksums that do not describe \
            this version (rewritten by another tool?): read unverified");
    }
    sums.filter(|_| fits)
}

fn body_is_small(b: &Bytes) -> bool {
    b.len() <= 256 << 10
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Body;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn chunks(d: &[u8], at: Range<u64>, piece: usize) -> ByteStream {
        let v: Vec<crate::error::Result<Bytes>> = d[at.start as usize..at.end as usize]
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(v))
    }

    #[test]
    fn entries_round_trip_and_stay_small() {
        let d = data(3 * MIN_BLOCK as usize + 5);
        let s = BlockSums::compute(&d, &md5_of(&d));
        assert_eq!((s.block, s.digests.len()), (MIN_BLOCK, 4));
        assert_eq!(BlockSums::decode(&s.encode()), Some(s.clone()));
        assert!(s.describes(&s.md5.to_uppercase(), d.len() as u64));
        assert!(!s.describes(&s.md5, d.len() as u64 + 1));
        assert!(!s.describes("0123-2", d.len() as u64));
        // A large object gets larger blocks, never more than MAX_BLOCKS.
        assert_eq!(block_for(100 << 20), 4 << 20);
        assert_eq!(block_for(0), MIN_BLOCK);
        let big = BlockSums {
            block: 1 << 30,
            size: 32 << 30,
            md5: "0".repeat(32),
            digests: vec![[7; DIGEST_LEN]; 32],
        };
        assert!(big.encode().len() < 600, "{}", big.encode().len());
        for bad in [
            "",
            "2:20:1:x:",
            "1:20:5:short:AAAA",
            "1:20:3000000:",
            "1:10:0::",
        ] {
            assert_eq!(BlockSums::decode(bad), None, "{bad}");
        }
        // Too much metadata already: no entry.
        let mut meta = std::collections::HashMap::new();
        assert!(entry_for(&d, &md5_of(&d), &meta).is_some());
        meta.insert("x".to_string(), "y".repeat(MAX_USER_METADATA - 100));
        assert!(entry_for(&d, &md5_of(&d), &meta).is_none());
        // S3's ETag of a single PutObject is this MD5.
        assert_eq!(hex(&md5_of(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[tokio::test]
    async fn whole_blocks_are_checked_before_they_are_returned() {
        let d = data(2 * MIN_BLOCK as usize + 1000);
        let s = BlockSums::compute(&d, &md5_of(&d));
        let want = (MIN_BLOCK + 10)..(2 * MIN_BLOCK + 20);
        let span = s.span(&want);
        assert_eq!(span, MIN_BLOCK..d.len() as u64);
        let v = verified(
            chunks(&d, span.clone(), 7777),
            s.clone(),
            span.clone(),
            "t".into(),
        );
        let out = Body::Stream(trimmed(v, want.start - span.start, want.end - want.start))
            .collect()
            .await
            .unwrap();
        assert_eq!(&out[..], &d[want.start as usize..want.end as usize]);
        // One byte altered: an error, and none of that block's bytes come out.
        let mut bad = d.clone();
        bad[MIN_BLOCK as usize + 5] ^= 1;
        let mut v = verified(
            chunks(&bad, span.clone(), 4096),
            s.clone(),
            span.clone(),
            "t".into(),
        );
        match v.next().await {
            Some(Err(StoreError::Corrupt { what })) => assert!(what.contains("1048576"), "{what}"),
            other => panic!(
                "expected Corrupt, got {:?}",
                other.map(|r| r.map(|b| b.len()))
            ),
        }
        // A block that is right, then a short body.
        let short_span = 0..MIN_BLOCK + 10;
        let v = verified(
            chunks(&d, short_span, 65536),
            s.clone(),
            0..s.size,
            "t".into(),
        );
        assert!(Body::Stream(v).collect().await.is_err());
    }
}
