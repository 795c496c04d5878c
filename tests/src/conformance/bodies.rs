//! Bodies and sizes: streamed bodies, failing streams, large objects, concurrency.

use std::ops::Range;

use bytes::Bytes;
use futures::future::join_all;
use objfs_store::{
    Body, Condition, CopyOptions, ErrorKind, ObjectInfo, ObjectStore, PartInfo, PutOptions,
    StoreError, VersionId,
};

use crate::support::{assert_kind, det_bytes};

use super::helpers::*;

fn chunked(data: &[u8], sizes: impl Fn(usize) -> usize) -> Body {
    let mut chunks = Vec::new();
    let mut off = 0;
    let mut i = 0;
    while off < data.len() {
        let n = sizes(i).min(data.len() - off);
        chunks.push(Ok(Bytes::copy_from_slice(&data[off..off + n])));
        off += n;
        i += 1;
    }
    Body::from_stream(futures::stream::iter(chunks))
}

/// Streamed bodies of many small (and empty) chunks are stored exactly.
pub async fn streaming_bodies(s: &dyn ObjectStore) {
    let ns = "streaming_bodies/";
    let data = det_bytes(30, 40_000);
    let info = s
        .put(
            &format!("{ns}a"),
            chunked(&data, |i| i % 97),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 40_000);
    assert_eq!(read(s, &format!("{ns}a"), None).await, data);
    // The same bytes as one buffer.
    put(s, &format!("{ns}b"), data.clone()).await;
    assert_eq!(read(s, &format!("{ns}b"), None).await, data);
    // A stream without chunks is an empty object.
    let info = s
        .put(
            &format!("{ns}empty"),
            Body::from_stream(futures::stream::iter(Vec::new())),
            PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    // A part from a stream (at least the backend's minimum part size, as it is not the last).
    let key = format!("{ns}mp");
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let min = s.features().min_part_size as usize;
    let part = if min > data.len() {
        det_bytes(31, min)
    } else {
        data.clone()
    };
    let scale = (part.len() / data.len()).max(1);
    let p1 = s
        .upload_part(&key, &id, 1, chunked(&part, |i| (1 + i % 13) * scale))
        .await
        .unwrap();
    assert_eq!(p1.size, part.len() as u64);
    let p2 = s
        .upload_part(&key, &id, 2, chunked(b"end", |_| 1))
        .await
        .unwrap();
    s.complete_multipart(&key, &id, &done(&[&p1, &p2]))
        .await
        .unwrap();
    let mut want = part;
    want.extend_from_slice(b"end");
    assert_eq!(read(s, &key, None).await, want);
}

/// A body stream that fails makes the write fail and leaves nothing behind.
pub async fn streaming_error_is_atomic(s: &dyn ObjectStore) {
    let ns = "streaming_error_is_atomic/";
    let failing = || {
        let chunks: Vec<objfs_store::Result<Bytes>> = vec![
            Ok(Bytes::from(det_bytes(1, 5000))),
            Ok(Bytes::from(det_bytes(2, 5000))),
            Err(StoreError::io(
                "test body",
                std::io::Error::other("the client went away"),
            )),
        ];
        Body::from_stream(futures::stream::iter(chunks))
    };
    let key = format!("{ns}k");
    assert!(s.put(&key, failing(), PutOptions::default()).await.is_err());
    assert_kind(s.head(&key, None).await, ErrorKind::NotFound, "failed put");
    assert!(versions_of(s, &key).await.is_empty());
    let v1 = put(s, &key, "good").await.version;
    assert!(s.put(&key, failing(), PutOptions::default()).await.is_err());
    assert_eq!(s.head(&key, None).await.unwrap().version, v1);
    assert_eq!(read(s, &key, None).await, b"good");
    // A failing part leaves the previous part of that number in place.
    let mk = format!("{ns}mp");
    let id = s
        .create_multipart(&mk, PutOptions::default())
        .await
        .unwrap();
    let p1 = s.upload_part(&mk, &id, 1, "part one".into()).await.unwrap();
    assert!(s.upload_part(&mk, &id, 1, failing()).await.is_err());
    assert!(s.upload_part(&mk, &id, 2, failing()).await.is_err());
    assert_eq!(s.list_parts(&mk, &id).await.unwrap(), vec![p1.clone()]);
    s.complete_multipart(&mk, &id, &done(&[&p1])).await.unwrap();
    assert_eq!(read(s, &mk, None).await, b"part one");
}

/// A 20 MiB object spanning many internal blobs, read whole and across boundaries.
pub async fn large_object(s: &dyn ObjectStore) {
    let key = "large_object/big";
    let size = 20 << 20;
    let data = det_bytes(40, size);
    let info = s
        .put(key, chunked(&data, |_| 64 << 10), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(info.size, size as u64);
    assert!(
        read(s, key, None).await == data,
        "whole 20 MiB read differs"
    );
    let mut ranges: Vec<Range<u64>> = vec![0..1, 0..4096, 4095..4097, 0..(256 << 10) + 1];
    for b in [4096u64, 65536, 256 << 10, 1 << 20, 3 << 20, 10 << 20] {
        ranges.push(b - 1..b + 1);
        ranges.push(b - 100..b + 5000);
    }
    ranges.push((256 << 10) - 10..3 * (256 << 10) + 10);
    ranges.push((1 << 20) - 7..(5 << 20) + 13);
    ranges.push(size as u64 - 1..size as u64);
    ranges.push(size as u64 - 5000..size as u64 + 5000);
    ranges.push(size as u64..size as u64);
    for r in ranges {
        let (got, bytes) = read_range(s, key, None, r.clone()).await;
        let end = r.end.min(size as u64);
        assert_eq!(got, r.start..end);
        assert!(
            bytes == data[r.start as usize..end as usize],
            "range {r:?} differs"
        );
    }
    // Copy shares the data and reads the same.
    s.copy(key, "large_object/copy", CopyOptions::default())
        .await
        .unwrap();
    let (_, bytes) = read_range(s, "large_object/copy", None, (7 << 20) - 3..(9 << 20) + 3).await;
    assert!(bytes == data[(7 << 20) - 3..(9 << 20) + 3]);
}

/// A large multipart object made of a copied range of a large object and fresh parts.
pub async fn large_multipart(s: &dyn ObjectStore) {
    let ns = "large_multipart/";
    let src = format!("{ns}src");
    let key = format!("{ns}obj");
    // Parts other than the last are at least the backend's minimum part size.
    let min = s.features().min_part_size;
    let sdata = det_bytes(50, (6 << 20) + min as usize);
    put(s, &src, sdata.clone()).await;
    let id = s
        .create_multipart(&key, PutOptions::default())
        .await
        .unwrap();
    let fresh = det_bytes(51, (3 << 20) + 17 + min as usize);
    let r = ((1 << 20) + 3)..((5 << 20) + 7 + min);
    let (p1, p2, p3) = futures::join!(
        s.upload_part_copy(&key, &id, 1, &src, None, Some(r.clone())),
        s.upload_part(&key, &id, 2, chunked(&fresh, |_| 100_000)),
        s.upload_part_copy(&key, &id, 3, &src, None, None),
    );
    let (p1, p2, p3) = (p1.unwrap(), p2.unwrap(), p3.unwrap());
    s.complete_multipart(&key, &id, &done(&[&p1, &p2, &p3]))
        .await
        .unwrap();
    let mut want = sdata[r.start as usize..r.end as usize].to_vec();
    want.extend_from_slice(&fresh);
    want.extend_from_slice(&sdata);
    assert!(read(s, &key, None).await == want, "large multipart differs");
    let b1 = p1.size;
    let b2 = p1.size + p2.size;
    for r in [b1 - 10..b1 + 10, b2 - 4097..b2 + 4097, b1 - 1..b2 + 1] {
        let (_, got) = read_range(s, &key, None, r.clone()).await;
        assert!(got == want[r.start as usize..r.end as usize], "range {r:?}");
    }
}

/// Concurrent writes to one key all make versions; concurrent parts all land.
pub async fn concurrent_writes(s: &dyn ObjectStore) {
    let key = "concurrent_writes/k";
    let results = join_all((0..8u64).map(|i| {
        s.put(
            key,
            det_bytes(i, 1000 + i as usize).into(),
            PutOptions::default(),
        )
    }))
    .await;
    let infos: Vec<ObjectInfo> = results.into_iter().map(|r| r.unwrap()).collect();
    let ids: Vec<VersionId> = infos.iter().map(|i| i.version.clone()).collect();
    assert_distinct(&ids, "version ids must be unique");
    // The newest is whichever the backend lists first.
    let newest_id = versions_of(s, key).await[0].version.clone();
    let newest = infos.iter().find(|i| i.version == newest_id).unwrap();
    assert_eq!(s.head(key, None).await.unwrap().version, newest.version);
    let i = infos
        .iter()
        .position(|x| x.version == newest.version)
        .unwrap();
    assert_eq!(read(s, key, None).await, det_bytes(i as u64, 1000 + i));
    assert_eq!(versions_of(s, key).await.len(), 8);
    // IfNotExists races: exactly one wins.
    let k2 = "concurrent_writes/once";
    let res = join_all((0..6).map(|_| {
        s.put(
            k2,
            "x".into(),
            PutOptions {
                condition: Condition::IfNotExists,
                ..Default::default()
            },
        )
    }))
    .await;
    assert_eq!(
        res.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one IfNotExists wins"
    );
    for r in res.into_iter().filter_map(|r| r.err()) {
        assert_eq!(r.kind(), ErrorKind::PreconditionFailed);
    }
    // Parts concurrently.
    let mk = "concurrent_writes/mp";
    let id = s.create_multipart(mk, PutOptions::default()).await.unwrap();
    let parts: Vec<PartInfo> = join_all(
        (1..=16u32)
            .rev()
            .map(|n| s.upload_part(mk, &id, n, det_bytes(n as u64, 3000).into())),
    )
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let mut parts_sorted = parts.clone();
    parts_sorted.sort_by_key(|p| p.part_number);
    assert_eq!(s.list_parts(mk, &id).await.unwrap(), parts_sorted);
    let refs: Vec<&PartInfo> = parts_sorted.iter().collect();
    s.complete_multipart(mk, &id, &done(&refs)).await.unwrap();
    let want: Vec<u8> = (1..=16u64).flat_map(|n| det_bytes(n, 3000)).collect();
    assert_eq!(read(s, mk, None).await, want);
}
