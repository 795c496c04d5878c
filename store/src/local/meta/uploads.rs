//! Multipart uploads in the metadata: the upload and part rows, and the commit that turns an
//! upload's parts into a version of its key (in one log record, like every commit).

use super::*;

impl Meta {
    pub fn create_upload(&self, key: &str, opts: &PutOptions) -> Result<String> {
        let id = format!("{:016x}{:016x}", now_nanos(), self.next_id()?);
        let rec = UploadRecord {
            key: key.into(),
            initiated: now_nanos(),
            metadata: opts.metadata.clone(),
            condition: opts.condition.clone().into(),
            durable: opts.durable,
        };
        let _state = self.lock();
        let mut txn = Txn::new();
        txn.insert(upload_key(&id), encode(&rec)?);
        txn.upload(key, 1, 0, 0);
        self.write_rows(txn)?;
        Ok(id)
    }

    /// The upload `id` of `key`, or `NoSuchUpload`.
    pub fn upload(&self, key: &str, id: &str) -> Result<UploadRecord> {
        let no_such = || StoreError::NoSuchUpload {
            upload_id: id.into(),
        };
        if id.is_empty() || id.as_bytes().contains(&0) {
            return Err(no_such());
        }
        match self.get::<UploadRecord>(&upload_key(id))? {
            Some(u) if u.key == key => Ok(u),
            _ => Err(no_such()),
        }
    }

    fn replace_part(
        &self,
        txn: &mut Txn,
        (key, id): (&str, &str),
        part: u32,
        rec: &PartRecord,
    ) -> Result<()> {
        if let Some(old) = self.get::<PartRecord>(&part_key(id, part))? {
            txn.add_refs(&old.extents, -1);
            txn.upload(key, 0, -1, -(old.size as i64));
        }
        txn.upload(key, 0, 1, rec.size as i64);
        txn.insert(part_key(id, part), encode(rec)?);
        Ok(())
    }

    /// Records an uploaded part made of fresh blobs (replacing a part with the same number).
    pub fn commit_part(
        &self,
        key: &str,
        id: &str,
        part: u32,
        blobs: Vec<(u64, BlobRecord)>,
        rec: &PartRecord,
    ) -> Result<()> {
        let mut state = self.lock();
        self.upload(key, id)?;
        let mut txn = Txn::new();
        txn.new_blobs.extend(blobs);
        self.replace_part(&mut txn, (key, id), part, rec)?;
        let st = state.stats;
        self.apply(&mut state, st, txn)
    }

    /// Records a part that is a byte range of an existing version (extents shared).
    pub fn commit_part_copy(
        &self,
        key: &str,
        id: &str,
        part: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartRecord> {
        let mut state = self.lock();
        self.upload(key, id)?;
        let (sv, srec) = self.resolve(src, src_version)?;
        let r = resolve_range(range.as_ref(), srec.size)?;
        let extents = slice_extents(&srec.extents, r.clone());
        let mut h = blake3::Hasher::new();
        h.update(b"part-copy\0");
        h.update(srec.etag.as_bytes());
        h.update(&sv.0.to_le_bytes());
        h.update(&r.start.to_le_bytes());
        h.update(&r.end.to_le_bytes());
        let rec = PartRecord {
            etag: h.finalize().to_hex()[..32].to_string(),
            size: r.end - r.start,
            extents,
        };
        let mut txn = Txn::new();
        txn.add_refs(&rec.extents, 1);
        self.replace_part(&mut txn, (key, id), part, &rec)?;
        let st = state.stats;
        self.apply(&mut state, st, txn)?;
        Ok(rec)
    }

    pub fn parts(&self, id: &str) -> Result<Vec<(u32, PartRecord)>> {
        let mut out = Vec::new();
        let prefix = part_prefix(id);
        for row in self.scan_prefix(&prefix) {
            let (k, v) = row?;
            let num: [u8; 4] = k[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    what: format!("malformed part row of upload {id}"),
                })?;
            out.push((u32::from_be_bytes(num), decode(&v)?));
        }
        Ok(out)
    }

    /// Completes an upload: the listed parts, concatenated, become a new version.
    pub fn commit_complete(
        &self,
        key: &str,
        id: &str,
        list: &[CompletedPart],
    ) -> Result<(LocalVersion, VersionRecord, bool)> {
        let mut state = self.lock();
        let upload = self.upload(key, id)?;
        if list.is_empty() {
            return Err(StoreError::InvalidPart("the part list is empty".into()));
        }
        for w in list.windows(2) {
            if w[1].part_number <= w[0].part_number {
                return Err(StoreError::InvalidPart(format!(
                    "part numbers must increase strictly ({} then {})",
                    w[0].part_number, w[1].part_number
                )));
            }
        }
        let parts: HashMap<u32, PartRecord> = self.parts(id)?.into_iter().collect();
        let mut extents = Vec::new();
        let mut size = 0u64;
        let mut h = blake3::Hasher::new();
        for p in list {
            match parts.get(&p.part_number) {
                Some(rec) if rec.etag == p.etag => {
                    extents.extend_from_slice(&rec.extents);
                    size += rec.size;
                    h.update(rec.etag.as_bytes());
                }
                Some(_) => {
                    return Err(StoreError::InvalidPart(format!(
                        "part {} has a different etag",
                        p.part_number
                    )))
                }
                None => {
                    return Err(StoreError::InvalidPart(format!(
                        "part {} was not uploaded",
                        p.part_number
                    )))
                }
            }
        }
        let cur = self.checked_current(key, &upload.condition.clone().into())?;
        let mut txn = Txn::new();
        let listed: std::collections::HashSet<u32> = list.iter().map(|p| p.part_number).collect();
        let mut part_bytes = 0;
        for (num, rec) in &parts {
            if !listed.contains(num) {
                txn.add_refs(&rec.extents, -1);
            }
            part_bytes += rec.size as i64;
            txn.remove(part_key(id, *num));
        }
        txn.remove(upload_key(id));
        txn.upload(key, -1, -(parts.len() as i64), -part_bytes);
        let rec = VersionRecord {
            delete_marker: false,
            size,
            etag: format!("{}-{}", &h.finalize().to_hex()[..32], list.len()),
            metadata: upload.metadata,
            extents,
        };
        let deleted = self.is_deleted(key, cur.as_ref())?;
        let mut st = state.stats;
        let vid = self.next_version(&mut state, &mut txn)?;
        Self::install_version(&mut st, &mut txn, key, vid, &rec, cur.as_ref(), deleted)?;
        self.apply(&mut state, st, txn)?;
        Ok((vid, rec, upload.durable))
    }

    pub fn commit_abort(&self, key: &str, id: &str) -> Result<()> {
        let mut state = self.lock();
        self.upload(key, id)?;
        let mut txn = Txn::new();
        let (mut parts, mut bytes) = (0, 0);
        for (num, rec) in self.parts(id)? {
            txn.add_refs(&rec.extents, -1);
            txn.remove(part_key(id, num));
            parts += 1;
            bytes += rec.size as i64;
        }
        txn.remove(upload_key(id));
        txn.upload(key, -1, -parts, -bytes);
        let st = state.stats;
        self.apply(&mut state, st, txn)
    }

    pub fn uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        for row in self.scan_prefix([table::UPLOAD]) {
            let (k, v) = row?;
            let rec: UploadRecord = decode(&v)?;
            if rec.key.starts_with(prefix) {
                out.push(UploadInfo {
                    key: rec.key,
                    upload_id: String::from_utf8_lossy(&k[1..]).into_owned(),
                    initiated: std::time::UNIX_EPOCH
                        + std::time::Duration::from_nanos(rec.initiated),
                });
            }
        }
        out.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        Ok(out)
    }
}
