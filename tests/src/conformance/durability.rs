//! Durability, capacity and the backend's description.

use objfs_store::{CopyOptions, ObjectStore, PutOptions};

use crate::support::det_bytes;

use super::helpers::*;

/// Durable writes and sync succeed and change nothing visible.
pub async fn sync_and_durable(s: &dyn ObjectStore) {
    let ns = "sync_and_durable/";
    let durable = PutOptions {
        durable: true,
        ..Default::default()
    };
    s.put(&format!("{ns}a"), "durable".into(), durable.clone())
        .await
        .unwrap();
    put(s, &format!("{ns}b"), "plain").await;
    s.sync().await.unwrap();
    s.sync().await.unwrap();
    s.copy(
        &format!("{ns}a"),
        &format!("{ns}c"),
        CopyOptions {
            durable: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let id = s
        .create_multipart(&format!("{ns}d"), durable)
        .await
        .unwrap();
    let p = s
        .upload_part(&format!("{ns}d"), &id, 1, "mp".into())
        .await
        .unwrap();
    s.complete_multipart(&format!("{ns}d"), &id, &done(&[&p]))
        .await
        .unwrap();
    s.sync().await.unwrap();
    assert_eq!(read(s, &format!("{ns}a"), None).await, b"durable");
    assert_eq!(read(s, &format!("{ns}b"), None).await, b"plain");
    assert_eq!(read(s, &format!("{ns}c"), None).await, b"durable");
    assert_eq!(read(s, &format!("{ns}d"), None).await, b"mp");
}

/// used_bytes and objects follow the live current versions (relative checks only).
pub async fn capacity_accounting(s: &dyn ObjectStore) {
    let ns = "capacity_accounting/";
    let c0 = s.capacity().await.unwrap();
    assert!(c0.total_bytes >= c0.free_bytes, "{c0:?}");
    assert_ne!(c0.total_bytes, 0);
    let a = format!("{ns}a");
    put(s, &a, vec![7u8; 10_000]).await;
    let c1 = s.capacity().await.unwrap();
    assert_eq!(c1.used_bytes, c0.used_bytes + 10_000, "after put");
    assert_eq!(c1.objects, c0.objects + 1);
    // An overwrite replaces the size; old versions are not live.
    put(s, &a, vec![8u8; 4_000]).await;
    let c2 = s.capacity().await.unwrap();
    assert_eq!(c2.used_bytes, c0.used_bytes + 4_000, "after overwrite");
    assert_eq!(c2.objects, c0.objects + 1);
    // A copy is a live object of its own (logical bytes).
    s.copy(&a, &format!("{ns}b"), CopyOptions::default())
        .await
        .unwrap();
    let c3 = s.capacity().await.unwrap();
    assert_eq!(c3.used_bytes, c0.used_bytes + 8_000, "after copy");
    assert_eq!(c3.objects, c0.objects + 2);
    // A delete hides the object.
    let m = s.delete(&a).await.unwrap().expect("marker");
    let c4 = s.capacity().await.unwrap();
    assert_eq!(c4.used_bytes, c0.used_bytes + 4_000, "after delete");
    assert_eq!(c4.objects, c0.objects + 1);
    // Undelete brings it back (without versions, a delete is final: write it again).
    if s.features().versioning {
        s.delete_version(&a, m).await.unwrap();
    } else {
        put(s, &a, vec![8u8; 4_000]).await;
    }
    let c5 = s.capacity().await.unwrap();
    assert_eq!(c5.used_bytes, c0.used_bytes + 8_000, "after undelete");
    assert_eq!(c5.objects, c0.objects + 2);
    // A multipart result counts once completed.
    let mk = format!("{ns}mp");
    let id = s
        .create_multipart(&mk, PutOptions::default())
        .await
        .unwrap();
    let p = s
        .upload_part(&mk, &id, 1, vec![1u8; 3_000].into())
        .await
        .unwrap();
    s.complete_multipart(&mk, &id, &done(&[&p])).await.unwrap();
    let c6 = s.capacity().await.unwrap();
    assert_eq!(c6.used_bytes, c0.used_bytes + 11_000, "after multipart");
    assert_eq!(c6.objects, c0.objects + 3);
    // Removing every version of everything returns to the start.
    for k in [a, format!("{ns}b"), mk] {
        for v in versions_of(s, &k).await {
            s.delete_version(&k, v.version).await.unwrap();
        }
    }
    let c7 = s.capacity().await.unwrap();
    assert_eq!(
        (c7.used_bytes, c7.objects),
        (c0.used_bytes, c0.objects),
        "after removing all"
    );
    assert!(c7.total_bytes >= c7.free_bytes);
}

/// describe() names the backend; features() are coherent.
pub async fn describe_and_features(s: &dyn ObjectStore) {
    assert!(!s.describe().trim().is_empty());
    let f = s.features();
    // A backend with a minimum part size must still accept a small last part.
    let key = "describe_and_features/mp";
    let id = s
        .create_multipart(key, PutOptions::default())
        .await
        .unwrap();
    let first = det_bytes(60, f.min_part_size.max(1) as usize);
    let p1 = s
        .upload_part(key, &id, 1, first.clone().into())
        .await
        .unwrap();
    let p2 = s
        .upload_part(key, &id, 2, "small last".into())
        .await
        .unwrap();
    s.complete_multipart(key, &id, &done(&[&p1, &p2]))
        .await
        .unwrap();
    let mut want = first;
    want.extend_from_slice(b"small last");
    assert_eq!(read(s, key, None).await, want);
}
