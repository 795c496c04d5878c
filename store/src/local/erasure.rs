//! Erasure coding of sealed volumes: the pure part (layout arithmetic and the codec), no I/O.
//!
//! A sealed volume of `len` bytes becomes K data shards and M parity shards of `shard_len =
//! ceil(len / K)` bytes each. Data shard `i` is the contiguous slice `[i * shard_len, (i + 1) *
//! shard_len)` of the volume (the last one zero-padded), so the code is systematic and a healthy
//! read of a small object is one read from one data shard, with no decoding. Byte `j` of every
//! shard belongs to the same Reed-Solomon codeword, so any byte range can be reconstructed from
//! the same range of any K shards.

use std::ops::Range;

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{Result, StoreError};

/// Bytes covered by one checksum in a shard file.
pub const SHARD_CHUNK: u64 = 64 << 10;

/// A K+M Reed-Solomon scheme.
pub struct Scheme {
    pub k: usize,
    pub m: usize,
    codec: ReedSolomon,
}

impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scheme({}+{})", self.k, self.m)
    }
}

fn ec_err(e: reed_solomon_erasure::Error) -> StoreError {
    StoreError::Corrupt {
        what: format!("erasure coding failed: {e:?}"),
    }
}

impl Scheme {
    pub fn new(k: usize, m: usize) -> Result<Scheme> {
        if k == 0 || m == 0 || k + m > 64 {
            return Err(StoreError::InvalidArgument(format!(
                "erasure coding {k}+{m}: need K >= 1, M >= 1 and K + M <= 64"
            )));
        }
        let codec = ReedSolomon::new(k, m)
            .map_err(|e| StoreError::InvalidArgument(format!("erasure coding {k}+{m}: {e:?}")))?;
        Ok(Scheme { k, m, codec })
    }

    /// Length of every shard of a volume of `len` bytes.
    pub fn shard_len(&self, len: u64) -> u64 {
        len.div_ceil(self.k as u64).max(1)
    }

    /// The pieces of the volume range `range`: (data shard, range within that shard), in order.
    pub fn pieces(&self, shard_len: u64, range: Range<u64>) -> Vec<(usize, Range<u64>)> {
        let mut out = Vec::new();
        let mut at = range.start;
        while at < range.end {
            let shard = (at / shard_len) as usize;
            let off = at % shard_len;
            let take = (shard_len - off).min(range.end - at);
            out.push((shard, off..off + take));
            at += take;
        }
        out
    }

    /// Computes the parity shards from the data shards (all of one length).
    pub fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<()> {
        self.codec.encode_sep(data, parity).map_err(ec_err)
    }

    /// Fills in the missing (`None`) shards from the present ones; needs at least K present,
    /// all of one length. The caller must only pass shards it has verified.
    pub fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(StoreError::Corrupt {
                what: format!(
                    "only {present} of {} shards are readable; {} are needed",
                    self.k + self.m,
                    self.k
                ),
            });
        }
        self.codec.reconstruct(shards).map_err(ec_err)
    }
}

/// The default policy for `disks` disks: (replicas for new data, erasure coding K+M or none).
/// Modelled on MinIO's parity table: more disks, more parity; never more shards than disks.
pub fn default_policy(disks: usize) -> (u8, Option<(u8, u8)>) {
    match disks {
        0 | 1 => (1, None),
        2 => (2, None),
        3 => (2, Some((2, 1))),
        4 => (2, Some((2, 2))),
        5 => (2, Some((3, 2))),
        6 | 7 => (2, Some((4, 2))),
        n => {
            let m = 4u8;
            let k = ((n as u8).saturating_sub(m)).min(12);
            (2, Some((k, m)))
        }
    }
}

/// Storage overhead of a policy: bytes on disk per byte of data once placed.
pub fn overhead(ec: Option<(u8, u8)>, replicas: u8) -> f64 {
    match ec {
        Some((k, m)) => (k as f64 + m as f64) / k as f64,
        None => replicas as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_at_shard_boundaries() {
        let s = Scheme::new(4, 2).unwrap();
        let sl = s.shard_len(1000);
        assert_eq!(sl, 250);
        assert_eq!(s.pieces(sl, 10..20), vec![(0, 10..20)]);
        assert_eq!(
            s.pieces(sl, 240..510),
            vec![(0, 240..250), (1, 0..250), (2, 0..10)]
        );
        assert!(s.pieces(sl, 5..5).is_empty());
    }

    #[test]
    fn any_m_lost_shards_come_back() {
        let s = Scheme::new(4, 2).unwrap();
        let volume: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 251) as u8).collect();
        let sl = s.shard_len(volume.len() as u64) as usize;
        let mut shards: Vec<Vec<u8>> = volume.chunks(sl).map(|c| c.to_vec()).collect();
        let mut parity = vec![vec![0u8; sl]; 2];
        {
            let data: Vec<&[u8]> = shards.iter().map(|v| v.as_slice()).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|v| v.as_mut_slice()).collect();
            s.encode(&data, &mut p).unwrap();
        }
        shards.extend(parity);
        for lost in [(0, 1), (2, 5), (4, 5), (0, 3)] {
            let mut opt: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            opt[lost.0] = None;
            opt[lost.1] = None;
            s.reconstruct(&mut opt).unwrap();
            let back: Vec<u8> = opt[..4].iter().flat_map(|x| x.clone().unwrap()).collect();
            assert_eq!(back, volume);
        }
        // A sub-range reconstructs from the same sub-range of the others.
        let mut opt: Vec<Option<Vec<u8>>> =
            shards.iter().map(|v| Some(v[100..200].to_vec())).collect();
        opt[1] = None;
        s.reconstruct(&mut opt).unwrap();
        assert_eq!(opt[1].as_deref().unwrap(), &shards[1][100..200]);
        // M + 1 lost: refused, not guessed.
        let mut opt: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        opt[0] = None;
        opt[1] = None;
        opt[2] = None;
        assert!(s.reconstruct(&mut opt).is_err());
    }

    #[test]
    fn policies_fit_their_disks() {
        for n in 1..20 {
            let (r, ec) = default_policy(n);
            assert!(r as usize <= n.max(1));
            if let Some((k, m)) = ec {
                assert!((k + m) as usize <= n && k >= 1 && m >= 1, "{n}: {k}+{m}");
            }
        }
        assert_eq!(overhead(Some((4, 2)), 2), 1.5);
    }
}
