//! The write-back decorator's [`ObjectStore`] implementation: which operations go through the
//! journal, which read it, and which pass to the bucket after the pending changes they must
//! follow (see the module doc of `writeback`).

use super::*;

/// Up to this many pending keys, [`ObjectStore::capacity`] asks the bucket about each.
const EXACT_CAPACITY_KEYS: usize = 256;

impl WriteBack {
    /// Journals `key`'s new version with `body` (the caller checked the key).
    async fn journal_put(
        &self,
        key: &str,
        body: &[u8],
        metadata: Metadata,
        condition: &Condition,
        durable: bool,
    ) -> Result<ObjectInfo> {
        let _w = self.shared.write.lock().await;
        self.check_condition(key, condition).await?;
        let seq = self.next_seq();
        let op = Op::Put {
            key: key.to_string(),
            id: self.new_id(seq, ""),
        };
        self.commit(seq, op, metadata, body, durable)
    }

    /// Whether the bucket holds nothing under `prefix` but the keys `deleted` (pending
    /// deletes, sorted): one listing of at most one key more than those.
    async fn emptied_by_deletes(&self, prefix: &str, deleted: &[String]) -> Result<bool> {
        let req = ListRequest {
            prefix: prefix.to_string(),
            max_keys: deleted.len() + 1,
            ..Default::default()
        };
        let page = self.shared.inner.list(&req).await?;
        let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
        let complete = page.next_token.is_none() && page.common_prefixes.is_empty();
        Ok(listing::hides_all(&keys, complete, deleted))
    }

    /// The current version of `key` as `known` from a kept answer, else as the bucket says.
    async fn current_head(
        &self,
        key: &str,
        known: Option<Option<ObjectInfo>>,
    ) -> Result<ObjectInfo> {
        match known {
            Some(Some(info)) => Ok(self.shown(info)),
            Some(None) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            None => self.bucket_head(key).await,
        }
    }

    /// The bucket's current version of `key`, its answer kept (recent.rs).
    async fn bucket_head(&self, key: &str) -> Result<ObjectInfo> {
        let recent = &self.shared.recent;
        let ticket = recent.ticket();
        match self.shared.inner.head(key, None).await {
            Ok(info) => {
                recent.keep_head(ticket, key, Some(info.clone()));
                Ok(self.shown(info))
            }
            Err(e) => {
                if matches!(e, StoreError::NotFound { .. }) {
                    recent.keep_head(ticket, key, None);
                }
                Err(e)
            }
        }
    }

    /// Waits for the pending changes of `keys` to reach the bucket (before an operation that
    /// passes to it and must come after them).
    async fn flush_keys(&self, keys: &[&str]) -> Result<()> {
        for k in keys {
            self.flush_key(k).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for WriteBack {
    fn describe(&self) -> String {
        format!(
            "{} (write-back journal {})",
            self.shared.inner.describe(),
            self.journal_dir().display()
        )
    }

    fn features(&self) -> StoreFeatures {
        self.shared.inner.features()
    }

    async fn put(&self, key: &str, body: Body, opts: PutOptions) -> Result<ObjectInfo> {
        self.check_key(key)?;
        let body = body.collect().await?;
        self.journal_put(key, &body, opts.metadata, &opts.condition, opts.durable)
            .await
    }

    async fn get(&self, key: &str, opts: GetOptions) -> Result<GetResult> {
        self.check_key(key)?;
        match self.pending_version(key, opts.version.as_ref()) {
            Some(Ok((info, p))) => {
                let range = resolve_range(opts.range.as_ref(), info.size)?;
                let body = self.pending_body(&p, range.clone()).await?;
                Ok(GetResult { info, range, body })
            }
            Some(Err(e)) => Err(e),
            None => {
                let opts = GetOptions {
                    version: self.bucket_id(opts.version),
                    range: opts.range,
                };
                let mut r = self.shared.inner.get(key, opts).await?;
                r.info = self.shown(r.info);
                Ok(r)
            }
        }
    }

    async fn head(&self, key: &str, version: Option<VersionId>) -> Result<ObjectInfo> {
        self.check_key(key)?;
        match self.pending_version(key, version.as_ref()) {
            Some(r) => r.map(|(info, _)| info),
            None if version.is_none() => {
                let known = self.shared.recent.head(key);
                self.current_head(key, known).await
            }
            None => {
                let info = self.shared.inner.head(key, self.bucket_id(version)).await?;
                Ok(self.shown(info))
            }
        }
    }

    async fn head_for_open(&self, key: &str) -> Result<ObjectInfo> {
        self.check_key(key)?;
        if let Some(r) = self.pending_version(key, None) {
            return r.map(|(info, _)| info);
        }
        let known = self.shared.recent.head_for_open(key);
        self.current_head(key, known).await
    }

    async fn delete(&self, key: &str) -> Result<Option<VersionId>> {
        self.check_key(key)?;
        let _w = self.shared.write.lock().await;
        let pending = self.shared.lock().latest(key).map(|p| p.kind.clone());
        match pending {
            Some(Kind::Delete) => return Ok(None),
            Some(Kind::Put { .. }) => {}
            // Nothing to delete: no marker (the bucket's answer may be a kept one).
            None if self.current(key).await?.is_none() => return Ok(None),
            None => {}
        }
        // Journaled like a put, pending or not: the unlink returns once the journal has it,
        // and the uploader sends the DELETE (after the key's earlier changes).
        let seq = self.next_seq();
        let op = Op::Delete {
            key: key.to_string(),
            id: self.new_id(seq, ""),
        };
        let made = self.commit(seq, op, Metadata::new(), &[], false)?;
        Ok(Some(made.version))
    }

    async fn delete_version(&self, key: &str, version: VersionId) -> Result<()> {
        self.check_key(key)?;
        self.flush_key(key).await?;
        let v = self.shared.lock().bucket_id(version);
        // The key's current version may change or go: nothing kept about it holds.
        self.shared.recent.unknown(key);
        let r = self.shared.inner.delete_version(key, v).await;
        self.shared.recent.unknown(key);
        r
    }

    async fn copy(&self, src: &str, dst: &str, opts: CopyOptions) -> Result<ObjectInfo> {
        self.check_key(src)?;
        self.check_key(dst)?;
        if let Some(r) = self.pending_version(src, opts.source_version.as_ref()) {
            // From a pending version: a journaled put of its bytes.
            let (info, p) = r?;
            let body = self.pending_bytes(&p, info.size).await?;
            let meta = opts.metadata.unwrap_or(info.metadata);
            return self
                .journal_put(dst, &body, meta, &opts.condition, opts.durable)
                .await;
        }
        self.flush_keys(&[dst]).await?;
        let opts = CopyOptions {
            source_version: self.bucket_id(opts.source_version),
            metadata: opts.metadata,
            condition: self.bucket_condition(opts.condition),
            durable: opts.durable,
        };
        let recent = &self.shared.recent;
        recent.forget(dst);
        let info = self.shared.inner.copy(src, dst, opts).await;
        recent.sent(dst, info.is_ok(), true);
        Ok(self.shown(info?))
    }

    async fn rename(&self, src: &str, dst: &str, opts: RenameOptions) -> Result<ObjectInfo> {
        self.check_key(src)?;
        self.check_key(dst)?;
        let _w = self.shared.write.lock().await;
        let cur = self.head(src, None).await?;
        if let Some(v) = &opts.source_version {
            if *v != cur.version {
                return Err(StoreError::PreconditionFailed {
                    key: src.to_string(),
                    reason: format!("current version is {}, not {v}", cur.version),
                });
            }
        }
        self.check_condition(dst, &opts.condition).await?;
        let seq = self.next_seq();
        let (id, src_marker) = (self.new_id(seq, ""), self.new_id(seq, "d"));
        let pending = self.pending_version(src, None);
        let (op, body) = match pending {
            Some(r) => {
                let (info, p) = r?;
                let body = self.pending_bytes(&p, info.size).await?;
                let op = Op::Rename {
                    src: src.to_string(),
                    src_marker,
                    dst: dst.to_string(),
                    id,
                };
                (op, body)
            }
            None => {
                let src_version = self.shared.lock().bucket_id(cur.version.clone());
                let op = Op::Move {
                    src: src.to_string(),
                    src_version: src_version.to_string(),
                    src_marker,
                    dst: dst.to_string(),
                    id,
                    size: cur.size,
                    etag: cur.etag.clone(),
                };
                (op, bytes::Bytes::new())
            }
        };
        self.commit(seq, op, cur.metadata, &body, opts.durable)
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage> {
        let size = req.page_size();
        let pos = listing::position(req)?;
        let overlay = listing::overlay(&self.shared.lock(), &req.prefix, pos.as_ref());
        let mut inner_req = listing::inner_request(req, pos.as_ref(), size + 1);
        let mut entries: Vec<Entry<ObjectInfo>> = Vec::new();
        // Common prefixes found empty once their pending deletes land (asked once each).
        let mut emptied: BTreeMap<String, bool> = BTreeMap::new();
        // The first request of a listing below a directory the bucket had nothing under a
        // moment ago is answered from that (recent.rs).
        let fresh_start = pos.is_none();
        // Where the bucket's next page starts (after this; `None`: at the start), so that
        // the pages of a directory's listing are kept as one (recent.rs).
        let mut from = inner_req.start_after.clone();
        let delimited = req.delimiter.as_deref() == Some("/");
        loop {
            let first = fresh_start && inner_req.continuation.is_none();
            let recent = &self.shared.recent;
            let page = if first && recent.empty_below(&req.prefix) {
                ListPage::default()
            } else {
                let ticket = recent.ticket();
                let page = self.shared.inner.list(&inner_req).await?;
                if delimited {
                    recent.keep_page(ticket, &req.prefix, from.as_deref(), &page);
                } else if first && listing::found_nothing(&page) {
                    // A lookup's one-key listing below a name: nothing there.
                    recent.keep_empty(ticket, &req.prefix);
                }
                let last_object = page.objects.last().map(|o| &o.key);
                from = last_object.max(page.common_prefixes.last()).cloned();
                page
            };
            let more = page.next_token.clone();
            let fresh = listing::page_entries(page)
                .into_iter()
                .filter(|e| match (e, &pos) {
                    (Entry::Prefix(p), Some(Position::Prefix(q))) => p != q,
                    _ => true,
                });
            entries.extend(fresh.map(|e| match e {
                Entry::Item(o) => Entry::Item(self.shown(o)),
                p => p,
            }));
            let bound = match (&more, entries.last()) {
                (Some(_), Some(Entry::Item(o))) => Some(o.key.clone()),
                (Some(_), Some(Entry::Prefix(p))) => Some(p.clone()),
                _ => None,
            };
            let mut merged = listing::merge(
                &entries,
                &overlay,
                &req.prefix,
                req.delimiter.as_deref(),
                bound.as_deref(),
            );
            for (p, deleted) in listing::doubtful_prefixes(&merged, &overlay) {
                if let std::collections::btree_map::Entry::Vacant(slot) = emptied.entry(p) {
                    let empty = self.emptied_by_deletes(slot.key(), &deleted).await?;
                    slot.insert(empty);
                }
            }
            merged.retain(|e| !matches!(e, Entry::Prefix(p) if emptied.get(p) == Some(&true)));
            if more.is_none() || merged.len() > size {
                return Ok(listing::list_page(merged, size));
            }
            inner_req.continuation = more;
        }
    }

    async fn list_versions(&self, req: &ListVersionsRequest) -> Result<VersionsPage> {
        let touches = {
            let st = self.shared.lock();
            st.keys
                .range(req.prefix.clone()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&req.prefix))
        };
        if !touches {
            let mut inner_req = req.clone();
            inner_req.version_marker = self.bucket_id(req.version_marker.clone());
            let mut page = self.shared.inner.list_versions(&inner_req).await?;
            let st = self.shared.lock();
            page.versions = page
                .versions
                .into_iter()
                .map(|v| st.shown_version(v))
                .collect();
            page.next_version_marker = page.next_version_marker.map(|v| st.shown(v));
            return Ok(page);
        }
        // Pending keys under the prefix: the whole listing, merged, then paged (no change is
        // in flight meanwhile, so none shows twice).
        let _gate = self.shared.gate.write().await;
        // Without the delimiter: the keys under a common prefix decide whether it follows a
        // key marker inside it.
        let mut by_key: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
        let mut inner_req = ListVersionsRequest {
            prefix: req.prefix.clone(),
            ..Default::default()
        };
        loop {
            let page = self.shared.inner.list_versions(&inner_req).await?;
            {
                let st = self.shared.lock();
                for v in page.versions {
                    let v = st.shown_version(v);
                    by_key.entry(v.key.clone()).or_default().push(v);
                }
            }
            if page.next_key_marker.is_none() {
                break;
            }
            inner_req.key_marker = page.next_key_marker;
            inner_req.version_marker = page.next_version_marker;
        }
        {
            let st = self.shared.lock();
            let pending = st
                .keys
                .range(req.prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&req.prefix));
            for (k, q) in pending {
                let q: Vec<Pending> = q.iter().cloned().collect();
                let bucket = by_key.remove(k).unwrap_or_default();
                by_key.insert(k.clone(), listing::key_versions(&q, bucket, st.coalesce));
            }
        }
        let items = listing::version_items(by_key, &req.prefix, req.delimiter.as_deref());
        listing::versions_page(items, req)
    }

    async fn create_multipart(&self, key: &str, opts: PutOptions) -> Result<String> {
        self.check_key(key)?;
        // The upload completes after the key's pending changes, in the bucket too.
        self.flush_key(key).await?;
        let opts = PutOptions {
            condition: self.bucket_condition(opts.condition),
            ..opts
        };
        self.shared.inner.create_multipart(key, opts).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Body,
    ) -> Result<PartInfo> {
        self.shared
            .inner
            .upload_part(key, upload_id, part_number, body)
            .await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &str,
        src_version: Option<VersionId>,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<PartInfo> {
        self.check_key(src)?;
        self.flush_key(src).await?;
        let v = self.bucket_id(src_version);
        self.shared
            .inner
            .upload_part_copy(key, upload_id, part_number, src, v, range)
            .await
    }

    async fn upload_part_zeros(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        len: u64,
    ) -> Result<PartInfo> {
        self.shared
            .inner
            .upload_part_zeros(key, upload_id, part_number, len)
            .await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<PartInfo>> {
        self.shared.inner.list_parts(key, upload_id).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectInfo> {
        // Changes journaled while the upload ran come before it in the bucket as well.
        self.flush_key(key).await?;
        let recent = &self.shared.recent;
        recent.forget(key);
        let info = self
            .shared
            .inner
            .complete_multipart(key, upload_id, parts)
            .await;
        recent.sent(key, info.is_ok(), true);
        Ok(self.shown(info?))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.shared.inner.abort_multipart(key, upload_id).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> Result<Vec<UploadInfo>> {
        self.shared.inner.list_multipart_uploads(prefix).await
    }

    /// Makes every journaled change durable on this machine's disk (not uploaded), and the
    /// bucket's own writes durable.
    async fn sync(&self) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.journal.sync_all())
            .await
            .map_err(|e| StoreError::io("write-back sync", std::io::Error::other(e)))??;
        self.shared.inner.sync().await
    }

    /// The bucket's figures with the pending changes applied: exact (one head per pending
    /// key, no upload finishing meanwhile) up to [`EXACT_CAPACITY_KEYS`] pending keys, beyond
    /// that the pending puts' bytes and objects added.
    async fn capacity(&self) -> Result<Capacity> {
        let _gate = self.shared.gate.write().await;
        let mut c = self.shared.inner.capacity().await?;
        let latest: Vec<(String, Option<u64>)> = {
            let st = self.shared.lock();
            st.keys
                .iter()
                .filter_map(|(k, q)| {
                    let size = listing::live_info(q.back()?).map(|i| i.size);
                    Some((k.clone(), size))
                })
                .collect()
        };
        let exact = latest.len() <= EXACT_CAPACITY_KEYS;
        for (key, size) in latest {
            if exact {
                match self.shared.inner.head(&key, None).await {
                    Ok(i) => {
                        c.used_bytes = c.used_bytes.saturating_sub(i.size);
                        c.objects = c.objects.saturating_sub(1);
                    }
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(size) = size {
                c.used_bytes += size;
                c.objects += 1;
            }
        }
        Ok(c)
    }

    async fn get_record(&self, name: &str) -> Result<Option<bytes::Bytes>> {
        self.shared.inner.get_record(name).await
    }

    async fn put_record(
        &self,
        name: &str,
        value: Option<bytes::Bytes>,
        durable: bool,
    ) -> Result<()> {
        self.shared.inner.put_record(name, value, durable).await
    }

    async fn list_records(&self, prefix: &str) -> Result<Vec<(String, bytes::Bytes)>> {
        self.shared.inner.list_records(prefix).await
    }

    async fn set_key_times(&self, key: &str, times: KeyTimes) -> Result<()> {
        self.shared.inner.set_key_times(key, times).await
    }

    async fn key_times(&self, key: &str) -> Result<KeyTimes> {
        self.shared.inner.key_times(key).await
    }
}
