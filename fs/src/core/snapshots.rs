//! The past, read-only: `.snapshots/` in the root of every mount, and the whole mount of
//! `objfs mount --at`.
//!
//! `.snapshots/@TIME/` (TIME any RFC 3339 moment not after now, resolved when it is looked
//! up) and `.snapshots/NAME/` (a named snapshot, `objfs_store::history::snapshots`) are the
//! tree as it was at that moment: every lookup, getattr, readdir and read under them goes
//! through the store's `head_at` / `list_at` and reads the version found by its id, never
//! the live namespace. The inode table tags each inode with its [`View`], so the same key in
//! two views is two inodes, and an inode's key inside its view is its path below the view's
//! root. Listing `.snapshots` shows the named snapshots and the moments the retention policy
//! keeps complete (`@TIME` names); it is hidden from the root's listing unless
//! `FsConfig::snapdir_visible`.
//!
//! Nothing under `.snapshots` changes: every change there, and of `.snapshots` itself, is
//! EROFS ([`ObjFs::check_change`]). The live code paths never see a view's inode: the core's
//! public operations send them here first, and `key_of`/`dir_prefix` refuse them (EROFS) as a
//! safety net, so a path that forgot to would fail rather than touch a live key.
//!
//! Attributes in a view come from the version as it was (mode, owner, times in its metadata;
//! directory markers, symlinks and special files alike); a directory that existed only
//! implicitly (keys below it, no marker) shows the mount's defaults with the view's moment as
//! its times. Times recorded beside keys (access times, directory times) are today's and are
//! not shown in the past. Since nothing in a view changes, its attributes are cached for as
//! long as the inode lives.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use objfs_store::history::{retention, snapshots, time};
use objfs_store::{ErrorKind, GetOptions, ListRequest, ObjectInfo, ObjectStore};

use super::links::{inode_key, stub_target};
use super::{is_not_found, marker_of, Attr, Entry, Found, ObjFs, Opened};
use crate::attr::{Attrs, Kind};
use crate::dirhandle::{DirEntry, DirHandle, Listing};
use crate::error::{FsError, FsResult};
use crate::inode::{View, RESERVED, ROOT, SNAPDIR};

/// Permission bits of `.snapshots` and of the root of each view (read-only directories).
const SNAP_DIR_PERM: u32 = 0o555;

/// The entries of `.snapshots`: every named snapshot and every moment the retention policy
/// keeps complete now (`@TIME`, not before `since`), by name. A store without records has
/// neither snapshots nor a policy of its own: the default policy's moments are listed.
pub async fn snapdir_entries(
    store: &dyn ObjectStore,
    since: Option<SystemTime>,
) -> FsResult<Vec<(String, SystemTime)>> {
    let unsupported = |e: &objfs_store::StoreError| e.kind() == ErrorKind::Unsupported;
    let named = match snapshots::list(store).await {
        Ok(v) => v,
        Err(e) if unsupported(&e) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let policy = match retention::load(store).await {
        Ok(p) => p,
        Err(e) if unsupported(&e) => retention::Policy::default(),
        Err(e) => return Err(e.into()),
    };
    let now = SystemTime::now();
    let mut out: BTreeMap<String, SystemTime> = BTreeMap::new();
    for t in policy.complete_moments(now, since.unwrap_or(SystemTime::UNIX_EPOCH)) {
        out.insert(format!("@{}", time::format_rfc3339(t)), t);
    }
    for s in named {
        out.insert(s.name, s.at);
    }
    Ok(out.into_iter().collect())
}

/// `dir/name`, or `name` in the root of a view.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

impl ObjFs {
    /// The view `ino` belongs to.
    pub(super) fn view_of(&self, ino: u64) -> FsResult<View> {
        self.table()?
            .view(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    /// Whether `name` in `parent` (or, without a name, `parent` itself) is in the past: the
    /// snapshot directory, or anything in a view of a moment. (An inode the table does not
    /// know is not: the live paths answer ENOENT for it.)
    pub(super) fn in_past(&self, parent: u64, name: Option<&str>) -> bool {
        (parent == ROOT && name == Some(SNAPDIR))
            || matches!(
                self.table().ok().and_then(|t| t.view(parent)),
                Some(View::Snapshots | View::At(_))
            )
    }

    /// Refuses (EROFS) a change on a read-only mount, of `.snapshots`, or of anything under
    /// it: `ino` is the inode changed, or the directory in which `name` is made, removed or
    /// renamed.
    pub(super) fn check_change(&self, ino: u64, name: Option<&str>) -> FsResult<()> {
        self.check_rw()?;
        if self.in_past(ino, name) {
            return Err(FsError::ReadOnly);
        }
        if ino == ROOT && name == Some(RESERVED) {
            return Err(FsError::NotPermitted(format!(
                "{RESERVED} is reserved for the store's own keys"
            )));
        }
        Ok(())
    }

    /// Whether `name` in `parent` is the reserved [`RESERVED`] at the root of the store (in
    /// the live tree or in a view of a moment): it is never looked up.
    pub(super) fn is_reserved(&self, parent: u64, name: &str) -> bool {
        if name != RESERVED {
            return false;
        }
        if parent == ROOT {
            return true;
        }
        let Ok(t) = self.table() else {
            return false;
        };
        matches!(t.view_key(parent), Some((View::At(_), k)) if k.is_empty())
    }

    /// The attributes of `.snapshots` and of the root of a view of moment `at`.
    fn snap_dir_attrs(&self, at: SystemTime) -> Attrs {
        let mut a = Attrs::default_for(Kind::Dir, &self.cfg, at);
        a.perm = SNAP_DIR_PERM;
        a
    }

    /// A lookup in the past answered from the inode table (attributes there never go stale);
    /// `None` when the store must be asked.
    pub(super) fn lookup_past_cached(&self, parent: u64, name: &str) -> Option<FsResult<Entry>> {
        let mut t = self.table().ok()?;
        if t.view(parent) == Some(View::Snapshots) && !name.starts_with('@') {
            // A named snapshot may have been deleted or made again of another moment.
            return None;
        }
        let ino = t.child(parent, name)?;
        let n = t.get(ino)?;
        let (a, _) = n.attrs.clone()?;
        if n.detached {
            return None;
        }
        let view = n.view;
        let ino = t.lookup_in(parent, name, a.kind, view);
        Some(Ok(self.entry(ino, &a)))
    }

    /// Looks `name` up in `parent` in the past: `.snapshots` in the root, an entry of
    /// `.snapshots`, or a name in a view of a moment.
    pub(super) async fn lookup_past(&self, parent: u64, name: &str) -> FsResult<Entry> {
        if let Some(r) = self.lookup_past_cached(parent, name) {
            return r;
        }
        if parent == ROOT && name == SNAPDIR {
            let a = self.snap_dir_attrs(self.started);
            return self.remember_in(parent, name, a, View::Snapshots);
        }
        match self.view_of(parent)? {
            View::Snapshots => {
                let at = match self.resolve_moment(name).await {
                    Ok(at) => at,
                    Err(e) => {
                        if e.is_not_found() {
                            self.table()?.detach(parent, name);
                        }
                        return Err(e);
                    }
                };
                let a = self.snap_dir_attrs(at);
                self.remember_in(parent, name, a, View::At(at))
            }
            View::At(at) => {
                let (_, dir) = self.view_key(parent)?;
                let key = join(&dir, name);
                self.check_key_len(&key)?;
                match self.probe_at(&key, at).await? {
                    Some(f) => {
                        let a = self.found_attrs_at(&key, &f, at).await;
                        self.remember_in(parent, name, a, View::At(at))
                    }
                    None => Err(FsError::NotFound(key)),
                }
            }
            View::Live => Err(FsError::Internal(format!(
                "inode {parent} is not in the past"
            ))),
        }
    }

    /// Records a lookup of `name` in `parent` as an inode of `view` with `attrs`.
    pub(super) fn remember_in(
        &self,
        parent: u64,
        name: &str,
        attrs: Attrs,
        view: View,
    ) -> FsResult<Entry> {
        let mut t = self.table()?;
        let ino = t.lookup_in(parent, name, attrs.kind, view);
        if let Some(n) = t.get_mut(ino) {
            n.attrs = Some((attrs.clone(), Instant::now()));
        }
        Ok(self.entry(ino, &attrs))
    }

    /// The moment an entry of `.snapshots` names: `@RFC3339` (not after now), or a named
    /// snapshot. ENOENT otherwise (with the reason in the log).
    async fn resolve_moment(&self, name: &str) -> FsResult<SystemTime> {
        if let Some(t) = name.strip_prefix('@') {
            let at = time::parse_absolute(t)
                .map_err(|e| FsError::NotFound(format!("{SNAPDIR}/{name}: {e}")))?;
            if at > SystemTime::now() {
                return Err(FsError::NotFound(format!(
                    "{SNAPDIR}/{name}: that moment is in the future"
                )));
            }
            return Ok(at);
        }
        if snapshots::check_name(name).is_err() {
            return Err(FsError::NotFound(format!("{SNAPDIR}/{name}")));
        }
        match snapshots::get(self.store.as_ref(), name).await {
            Ok(Some(s)) => Ok(s.at),
            Ok(None) => Err(FsError::NotFound(format!("{SNAPDIR}/{name}"))),
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                Err(FsError::NotFound(format!("{SNAPDIR}/{name}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The view of `ino` and its key there; EROFS-free: only for inodes in the past.
    pub(super) fn view_key(&self, ino: u64) -> FsResult<(View, String)> {
        self.table()?
            .view_key(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    /// The moment and key of `ino`, which must lie in a view of a moment.
    fn moment_key(&self, ino: u64) -> FsResult<(SystemTime, String, Kind)> {
        let kind = self
            .table()?
            .get(ino)
            .map(|n| n.kind)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        match self.view_key(ino)? {
            (View::At(at), key) => Ok((at, key, kind)),
            _ => Err(FsError::IsDir(SNAPDIR.into())),
        }
    }

    /// The version `key` had at `at`, `None` when it had none. A hard link's name (a stub,
    /// [`super::links`]) gives the version its inode object had at `at`: the file's bytes
    /// and attributes then, as in the live mount.
    async fn head_at(&self, key: &str, at: SystemTime) -> FsResult<Option<ObjectInfo>> {
        let found = self.head_at_raw(key, at).await?;
        let Some(id) = found.as_ref().and_then(stub_target) else {
            return Ok(found);
        };
        let inode = inode_key(id);
        match self.head_at_raw(&inode, at).await? {
            Some(i) => Ok(Some(i)),
            None => {
                // The inode object is written before its first name: never by objfs's order.
                tracing::warn!(name = key, %inode, "a link named a missing inode object then");
                Ok(found)
            }
        }
    }

    /// The version `key` itself had at `at` (a stub as the stub).
    async fn head_at_raw(&self, key: &str, at: SystemTime) -> FsResult<Option<ObjectInfo>> {
        match self.store.head_at(key, at).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) if e.kind() == ErrorKind::InvalidKey => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What `key` was at `at`: a directory (wins), a file/symlink, or nothing.
    async fn probe_at(&self, key: &str, at: SystemTime) -> FsResult<Option<Found>> {
        let prefix = marker_of(key);
        let below = async {
            if prefix.len() > self.max_key_len() {
                return Ok(None);
            }
            let req = ListRequest {
                prefix: prefix.clone(),
                max_keys: 1,
                ..Default::default()
            };
            self.store.list_at(&req, at).await.map(Some)
        };
        let (below, head) = tokio::join!(below, self.head_at(key, at));
        if let Some(page) = below? {
            if !page.objects.is_empty() || !page.common_prefixes.is_empty() {
                let marker = page.objects.into_iter().next().filter(|o| o.key == prefix);
                let marker = match marker {
                    Some(_) if !self.features.list_returns_metadata => {
                        self.head_at(&prefix, at).await?
                    }
                    m => m,
                };
                return Ok(Some(Found::Dir { marker }));
            }
        }
        Ok(head?.map(Found::Object))
    }

    /// The attributes of what was found at `key` in a view of moment `at`, with the times
    /// recorded beside it that were already recorded at `at`.
    async fn found_attrs_at(&self, key: &str, f: &Found, at: SystemTime) -> Attrs {
        let (a, versioned) = match f {
            Found::Dir { marker: None } => (Attrs::default_for(Kind::Dir, &self.cfg, at), false),
            other => (self.found_attrs(other), true),
        };
        self.with_times_at(key, a, versioned, at).await
    }

    /// getattr of an inode in the past whose attributes are not cached.
    pub(super) async fn getattr_past(&self, ino: u64) -> FsResult<Attr> {
        let (view, key) = self.view_key(ino)?;
        let attrs = match view {
            View::Snapshots => self.snap_dir_attrs(self.started),
            View::At(at) if key.is_empty() => self.snap_dir_attrs(at),
            View::At(at) => match self.probe_at(&key, at).await? {
                Some(f) => self.found_attrs_at(&key, &f, at).await,
                None => return Err(FsError::NotFound(key)),
            },
            View::Live => return Err(FsError::Internal(format!("inode {ino} is live"))),
        };
        self.cache_attrs(ino, &attrs);
        Ok(attrs.to_attr(ino))
    }

    /// Opens a file in the past: read-only (EROFS otherwise), reading the version it had.
    pub(super) async fn open_past(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(FsError::ReadOnly);
        }
        let (at, key, kind) = self.moment_key(ino)?;
        if kind == Kind::Dir {
            return Err(FsError::IsDir(key));
        }
        if kind.is_special() {
            return Err(FsError::NotSupported(format!("open of special file {key}")));
        }
        let info = self
            .head_at(&key, at)
            .await?
            .ok_or_else(|| FsError::NotFound(key.clone()))?;
        // As for a live file (`files.rs`): the kernel keeps its pages when they are of the
        // version opened (a moment's inode can meet another version only if gc or a
        // retention change removed the one it had).
        let keep_cache = {
            let mut t = self.table()?;
            let identity = Some((info.version.clone(), info.etag.clone()));
            let keep = t.get_mut(ino).is_some_and(|n| n.keep_pages(identity));
            t.open(ino);
            keep
        };
        let fh = self.new_handle(ino, false, (Some(info), 0))?;
        Ok(Opened { fh, keep_cache })
    }

    /// A symlink's target as it was.
    pub(super) async fn readlink_past(&self, ino: u64) -> FsResult<Bytes> {
        let (at, key, kind) = self.moment_key(ino)?;
        if kind != Kind::Symlink {
            return Err(FsError::Invalid(format!("{key} is not a symlink")));
        }
        let info = self
            .head_at(&key, at)
            .await?
            .ok_or_else(|| FsError::NotFound(key.clone()))?;
        let got = self
            .store
            .get(
                &info.key,
                GetOptions {
                    version: Some(info.version),
                    ..Default::default()
                },
            )
            .await?;
        Ok(got.bytes().await?)
    }

    /// The version whose metadata holds the extended attributes of `ino` in the past (none
    /// for `.snapshots`, the root of a view and an implicit directory).
    pub(super) async fn xattr_source_past(&self, ino: u64) -> FsResult<Option<ObjectInfo>> {
        let (view, key) = self.view_key(ino)?;
        let at = match view {
            View::At(at) if !key.is_empty() => at,
            _ => return Ok(None),
        };
        let kind = self.table()?.get(ino).map(|n| n.kind);
        if kind == Some(Kind::Dir) {
            return self.head_at(&marker_of(&key), at).await;
        }
        self.head_at(&key, at)
            .await?
            .map(Some)
            .ok_or(FsError::NotFound(key))
    }

    /// A directory handle on `.snapshots` or on a directory of a view.
    pub(super) fn opendir_past(&self, ino: u64) -> FsResult<DirHandle> {
        let (view, key) = self.view_key(ino)?;
        let kind = self.table()?.get(ino).map(|n| n.kind);
        if kind != Some(Kind::Dir) {
            return Err(FsError::NotDir(key));
        }
        let path = self
            .table()?
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let path_prefix = if path.is_empty() { path } else { path + "/" };
        let prefix = if key.is_empty() { key } else { marker_of(&key) };
        let listing = match view {
            View::Snapshots => Listing::Snapshots {
                since: self.cfg.store_created,
            },
            View::At(at) => Listing::At(at),
            View::Live => return Err(FsError::Internal(format!("inode {ino} is live"))),
        };
        Ok(DirHandle::with_listing(ino, prefix, path_prefix, listing))
    }

    /// The attributes of an entry listed in the past that the listing did not carry.
    pub(super) async fn entry_attrs_past(
        &self,
        listing: Listing,
        prefix: &str,
        e: &DirEntry,
    ) -> FsResult<(Attrs, View)> {
        let at = match (listing, e.at) {
            (Listing::Snapshots { .. }, Some(at)) => {
                return Ok((self.snap_dir_attrs(at), View::At(at)))
            }
            (Listing::At(at), _) => at,
            _ => return Err(FsError::Internal("not a listing of the past".into())),
        };
        let key = format!("{prefix}{}", e.name);
        let (a, versioned) = match (e.kind, &e.object) {
            (Kind::Dir, _) => match self.head_at(&marker_of(&key), at).await? {
                Some(m) => (Attrs::from_object(&m, true, &self.cfg), true),
                None => (Attrs::default_for(Kind::Dir, &self.cfg, at), false),
            },
            (_, Some(o)) if self.features.list_returns_metadata && stub_target(o).is_none() => {
                (Attrs::from_object(o, false, &self.cfg), true)
            }
            _ => match self.head_at(&key, at).await? {
                Some(o) => (Attrs::from_object(&o, false, &self.cfg), true),
                None => return Err(FsError::NotFound(key)),
            },
        };
        let a = self.with_times_at(&key, a, versioned, at).await;
        Ok((a, View::At(at)))
    }

    /// The entry of `.snapshots` in the root's listing when it is visible.
    pub(super) fn snapdir_entry(&self) -> Option<DirEntry> {
        self.cfg.snapdir_visible.then(|| DirEntry {
            name: SNAPDIR.to_string(),
            kind: Kind::Dir,
            object: None,
            attrs: Some(self.snap_dir_attrs(self.started)),
            at: None,
        })
    }
}
