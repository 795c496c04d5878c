//! The block file of the disk cache, as bytes: a pure encoder and checker, no I/O.
//!
//! A block file holds one block of one object version and says whose block it is: the key, the
//! version id, the ETag and size the store gave for that version, and the block's offset. The
//! whole file (header and data) is covered by a BLAKE3 hash at its end, checked on every read,
//! so a corrupt, truncated or foreign file is refused and never returned as data. Byte layout:
//! docs/FORMAT.md ("Disk cache block files").

/// First bytes of every block file.
pub const MAGIC: [u8; 8] = *b"OBJFSBLK";
/// The format this code writes (and the only one it reads).
pub const FORMAT: u8 = 1;
/// Bytes of the fixed part of the header (magic to data length).
pub const FIXED_HEADER: usize = 8 + 1 + 2 + 2 + 2 + 8 + 8 + 4;
/// Bytes of the BLAKE3 hash that ends the file.
pub const HASH_LEN: usize = 32;

/// Whose block a block file holds. Two identities are equal only when every field is: a block
/// of one ETag is never served for another, whatever the version id says (a bucket without
/// versioning calls every version `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub key: &'a str,
    pub version: &'a str,
    pub etag: &'a str,
    /// Size of the whole object version.
    pub size: u64,
    /// Where the block starts in the object.
    pub offset: u64,
}

/// Why a block file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block file of {0} bytes is too short")]
    Truncated(usize),
    #[error("not a block file (bad magic)")]
    BadMagic,
    #[error("block file format {0} is not known (this build reads {FORMAT})")]
    UnknownFormat(u8),
    #[error("block file length {got} does not match its header ({want})")]
    Length { got: usize, want: usize },
    #[error("block file checksum mismatch")]
    Checksum,
    #[error("block file belongs to another block")]
    Identity,
    #[error("block file field too long: {0}")]
    TooLong(&'static str),
}

impl Identity<'_> {
    /// The file name of this block: 64 hex digits of a BLAKE3 hash of the identity (the
    /// format byte included, so another format names other files).
    pub fn file_name(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&[FORMAT]);
        for s in [self.key, self.version, self.etag] {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.update(&self.size.to_le_bytes());
        h.update(&self.offset.to_le_bytes());
        h.finalize().to_hex().to_string()
    }

    fn field_len(s: &str, what: &'static str) -> Result<u16, BlockError> {
        u16::try_from(s.len()).map_err(|_| BlockError::TooLong(what))
    }
}

/// The bytes of a block file holding `data` as the block `id`.
pub fn encode(id: &Identity<'_>, data: &[u8]) -> Result<Vec<u8>, BlockError> {
    let key_len = Identity::field_len(id.key, "key")?;
    let ver_len = Identity::field_len(id.version, "version")?;
    let etag_len = Identity::field_len(id.etag, "etag")?;
    let data_len = u32::try_from(data.len()).map_err(|_| BlockError::TooLong("data"))?;
    let total = FIXED_HEADER + id.key.len() + id.version.len() + id.etag.len() + data.len();
    let mut out = Vec::with_capacity(total + HASH_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&ver_len.to_le_bytes());
    out.extend_from_slice(&etag_len.to_le_bytes());
    out.extend_from_slice(&id.size.to_le_bytes());
    out.extend_from_slice(&id.offset.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(id.key.as_bytes());
    out.extend_from_slice(id.version.as_bytes());
    out.extend_from_slice(id.etag.as_bytes());
    out.extend_from_slice(data);
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    Ok(out)
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks a whole block file against `id` and returns where its data lies in `file`.
pub fn check(file: &[u8], id: &Identity<'_>) -> Result<std::ops::Range<usize>, BlockError> {
    if file.len() < FIXED_HEADER + HASH_LEN {
        return Err(BlockError::Truncated(file.len()));
    }
    if file[..8] != MAGIC {
        return Err(BlockError::BadMagic);
    }
    if file[8] != FORMAT {
        return Err(BlockError::UnknownFormat(file[8]));
    }
    let (key_len, ver_len, etag_len) = (u16_at(file, 9), u16_at(file, 11), u16_at(file, 13));
    let size = u64_at(file, 15);
    let offset = u64_at(file, 23);
    let data_len = u32::from_le_bytes([file[31], file[32], file[33], file[34]]) as usize;
    let strings = FIXED_HEADER + key_len + ver_len + etag_len;
    let want = strings + data_len + HASH_LEN;
    if file.len() != want {
        return Err(BlockError::Length {
            got: file.len(),
            want,
        });
    }
    let body = &file[..want - HASH_LEN];
    if blake3::hash(body).as_bytes()[..] != file[want - HASH_LEN..] {
        return Err(BlockError::Checksum);
    }
    let k = FIXED_HEADER;
    let (key, ver, etag) = (
        &file[k..k + key_len],
        &file[k + key_len..k + key_len + ver_len],
        &file[k + key_len + ver_len..strings],
    );
    if key != id.key.as_bytes()
        || ver != id.version.as_bytes()
        || etag != id.etag.as_bytes()
        || size != id.size
        || offset != id.offset
    {
        return Err(BlockError::Identity);
    }
    Ok(strings..strings + data_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity<'static> {
        Identity {
            key: "a/b.txt",
            version: "null",
            etag: "0123abcd",
            size: 3 << 20,
            offset: 1 << 20,
        }
    }

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let file = encode(&id(), &data).unwrap();
        assert_eq!(file.len(), FIXED_HEADER + 7 + 4 + 8 + 5000 + HASH_LEN);
        let r = check(&file, &id()).unwrap();
        assert_eq!(&file[r], &data[..]);
        let empty = encode(&id(), &[]).unwrap();
        assert!(check(&empty, &id()).unwrap().is_empty());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let data = vec![7u8; 300];
        let file = encode(&id(), &data).unwrap();
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x40;
            assert!(check(&bad, &id()).is_err(), "flip at {i}");
        }
        for n in 0..file.len() {
            assert!(check(&file[..n], &id()).is_err(), "truncated to {n}");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(check(&longer, &id()).is_err());
    }

    #[test]
    fn another_identity_is_refused_and_named_apart() {
        let file = encode(&id(), b"hello").unwrap();
        let others = [
            Identity {
                etag: "ffff",
                ..id()
            },
            Identity {
                version: "v2",
                ..id()
            },
            Identity { key: "a/c", ..id() },
            Identity { size: 5, ..id() },
            Identity { offset: 0, ..id() },
        ];
        for o in others {
            assert_eq!(check(&file, &o), Err(BlockError::Identity));
            assert_ne!(o.file_name(), id().file_name());
        }
        assert_eq!(id().file_name().len(), 64);
    }

    #[test]
    fn unknown_format_is_refused() {
        let mut file = encode(&id(), b"x").unwrap();
        file[8] = 2;
        assert_eq!(check(&file, &id()), Err(BlockError::UnknownFormat(2)));
    }
}
