//! What a bucket says of its capacity (`statfs` of a mount, so `df`). S3 has no capacity and
//! no cheap count of a bucket's objects, so: the live objects and their bytes are counted by
//! listing (ListObjectsV2, 1,000 keys a request) only up to [`COUNT_LIMIT`] keys, so a `df`
//! costs at most ten requests; a larger bucket reports nothing used and no objects (counting
//! it would cost a listing of every key). Total and free are nominal either way: 1 PiB free,
//! as s3fs and mountpoint-s3 report a large fixed figure.

use super::S3Store;
use crate::error::Result;
use crate::types::Capacity;

/// The free bytes a bucket reports: 1 PiB.
pub const NOMINAL_FREE: u64 = 1 << 50;

/// Keys counted at most (ten listing requests).
pub const COUNT_LIMIT: u64 = 10_000;

impl S3Store {
    /// The capacity figures (see the module's doc).
    pub(super) async fn count_capacity(&self) -> Result<Capacity> {
        let mut cap = Capacity::default();
        let mut token = None;
        loop {
            let raw = self
                .list_raw("", &self.prefix, None, None, token.take(), 1000)
                .await?;
            for o in &raw.objects {
                cap.objects += 1;
                cap.used_bytes += o.size;
            }
            match raw.next {
                Some(_) if cap.objects >= COUNT_LIMIT => {
                    // Too many to count cheaply: nothing is claimed.
                    cap.objects = 0;
                    cap.used_bytes = 0;
                    break;
                }
                Some(t) => token = Some(t),
                None => break,
            }
        }
        cap.free_bytes = NOMINAL_FREE;
        cap.total_bytes = NOMINAL_FREE.saturating_add(cap.used_bytes);
        Ok(cap)
    }
}
