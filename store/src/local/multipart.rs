//! Multipart uploads on the local store: parts are written as blobs like any body and
//! committed as part records; a part copy shares the source's extents; a part of zeros is one
//! hole extent (no data at all); completion makes one version whose extents are the parts'
//! extents, in order. No part's bytes are copied.

use crate::error::Result;
use crate::key::{validate, validate_prefix};
use crate::local::records::{Extent, PartRecord};
use crate::local::LocalStore;
use crate::types::check_part_number;
use crate::types::{Body, CompletedPart, ObjectInfo, PartInfo, PutOptions, UploadInfo, VersionId};

impl LocalStore {
    pub(super) async fn start_upload(&self, key: &str, opts: PutOptions) -> Result<String> {
        validate(key)?;
        self.inline(|i| i.meta.create_upload(key, &opts))
    }

    pub(super) async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        validate(key)?;
        check_part_number(part_number)?;
        // Refuse before writing any data when the upload does not exist.
        self.inline(|i| i.meta.upload(key, upload_id).map(|_| ()))?;
        let w = self.write_body(body).await?;
        self.inline(|i| {
            let rec = PartRecord {
                etag: w.etag,
                size: w.size,
                extents: w.extents,
            };
            i.meta
                .commit_part(key, upload_id, part_number, w.blobs, &rec)?;
            i.bump();
            Ok(PartInfo {
                part_number,
                etag: rec.etag,
                size: rec.size,
            })
        })
    }

    pub(super) async fn copy_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        validate(key)?;
        validate(src)?;
        check_part_number(part_number)?;
        self.inline(|i| {
            let rec =
                i.meta
                    .commit_part_copy(key, upload_id, part_number, src, src_version, range)?;
            i.bump();
            Ok(PartInfo {
                part_number,
                etag: rec.etag,
                size: rec.size,
            })
        })
    }

    /// A part of `len` zeros: one hole extent, no blob, no data written.
    pub(super) async fn zero_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        validate(key)?;
        check_part_number(part_number)?;
        let mut h = blake3::Hasher::new();
        h.update(b"zeros\0");
        h.update(&len.to_le_bytes());
        let rec = PartRecord {
            etag: h.finalize().to_hex()[..32].to_string(),
            size: len,
            extents: if len == 0 {
                Vec::new()
            } else {
                vec![Extent::hole(len)]
            },
        };
        self.inline(|i| {
            i.meta
                .commit_part(key, upload_id, part_number, Vec::new(), &rec)?;
            i.bump();
            Ok(PartInfo {
                part_number,
                etag: rec.etag,
                size: rec.size,
            })
        })
    }

    pub(super) async fn parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        validate(key)?;
        self.inline(|i| {
            i.meta.upload(key, upload_id)?;
            Ok(i.meta
                .parts(upload_id)?
                .into_iter()
                .map(|(n, p)| PartInfo {
                    part_number: n,
                    etag: p.etag,
                    size: p.size,
                })
                .collect())
        })
    }

    pub(super) async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        validate(key)?;
        let (info, durable) = self.inline(|i| {
            let (vid, rec, durable) = i.meta.commit_complete(key, upload_id, parts)?;
            i.bump();
            Ok((Self::info(key, vid, &rec), durable))
        })?;
        self.sync_if(durable).await?;
        Ok(info)
    }

    pub(super) async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        validate(key)?;
        self.inline(|i| {
            i.meta.commit_abort(key, upload_id)?;
            i.bump();
            Ok(())
        })
    }

    pub(super) async fn uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        validate_prefix(prefix)?;
        let p = prefix.to_string();
        self.blocking(move |i| i.meta.uploads(&p)).await
    }
}
