//! Unit tests of the memory store: ids, roll-up, tokens, listings, versions, multipart.

use super::listing::{self, decode_token, encode_token, roll_up, Position};
use super::*;
use crate::error::ErrorKind;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

async fn put(s: &MemoryStore, key: &str, data: &'static str) -> ObjectInfo {
    s.put(key, data.into(), PutOptions::default())
        .await
        .unwrap()
}

/// Follows every page of a listing and returns (objects, prefixes) in page order.
async fn list_all(s: &MemoryStore, mut req: ListRequest) -> (Vec<String>, Vec<String>, usize) {
    let (mut objs, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = s.list(&req).await.unwrap();
        pages += 1;
        assert!(page.objects.len() + page.common_prefixes.len() <= req.page_size());
        objs.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        match page.next_token {
            Some(t) => req.continuation = Some(t),
            None => return (objs, prefixes, pages),
        }
    }
}

#[test]
fn version_ids_follow_the_sequence() {
    rt().block_on(async {
        let s = MemoryStore::new();
        let mut last = 0;
        for _ in 0..100 {
            let v = put(&s, "k", "x").await.version;
            let seq = listing::seq_of(&v).unwrap();
            assert!(seq > last);
            last = seq;
        }
    });
}

#[test]
fn roll_up_rules() {
    assert_eq!(roll_up("", Some("/"), "a/b/c"), Some("a/".into()));
    assert_eq!(roll_up("a/", Some("/"), "a/b/c"), Some("a/b/".into()));
    assert_eq!(roll_up("a/", Some("/"), "a/b"), None);
    assert_eq!(roll_up("a", Some("/"), "a//b"), Some("a/".into()));
    assert_eq!(roll_up("a/", Some("/"), "a//b"), Some("a//".into()));
    assert_eq!(roll_up("", None, "a/b"), None);
    assert_eq!(roll_up("", Some(""), "a/b"), None);
    assert_eq!(roll_up("x", Some("/"), "a/b"), None);
    assert_eq!(roll_up("", Some("ab"), "xxabyab"), Some("xxab".into()));
}

#[test]
fn token_round_trip_and_garbage() {
    for p in [
        Position::Key("a/ü".into()),
        Position::Prefix("a//".into()),
        Position::Key(String::new()),
    ] {
        assert_eq!(decode_token(&encode_token(&p)).unwrap(), p);
    }
    for bad in [
        "", "garbage", "mem1.", "mem1.k0", "mem1.kzz", "mem1.x61", "mem1.kff",
    ] {
        assert_eq!(
            decode_token(bad).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{bad:?}"
        );
    }
}

#[test]
fn token_after_common_prefix_skips_keys_added_under_it() {
    rt().block_on(async {
        let s = MemoryStore::new();
        for k in ["a/1", "a/2", "b", "c/1"] {
            put(&s, k, "x").await;
        }
        let req = ListRequest {
            delimiter: Some("/".into()),
            max_keys: 1,
            ..Default::default()
        };
        let p1 = s.list(&req).await.unwrap();
        assert_eq!(p1.common_prefixes, vec!["a/".to_string()]);
        // A key written under the prefix after the page was returned must not bring the
        // prefix back.
        put(&s, "a/zzz", "x").await;
        let p2 = s
            .list(&ListRequest {
                continuation: p1.next_token.clone(),
                ..req.clone()
            })
            .await
            .unwrap();
        assert_eq!(p2.objects.len(), 1);
        assert_eq!(p2.objects[0].key, "b");
        assert!(p2.common_prefixes.is_empty());
        let (objs, prefixes, pages) = list_all(&s, req).await;
        assert_eq!(objs, vec!["b"]);
        assert_eq!(prefixes, vec!["a/", "c/"]);
        assert_eq!(pages, 3);
    });
}

#[test]
fn list_skips_deleted_and_sorts_bytes() {
    rt().block_on(async {
        let s = MemoryStore::new();
        for k in ["a/b", "a0", "a-", "a.", "a/", "é", "z"] {
            put(&s, k, "x").await;
        }
        s.delete("z").await.unwrap();
        let (objs, prefixes, _) = list_all(&s, ListRequest::default()).await;
        assert_eq!(objs, vec!["a-", "a.", "a/", "a/b", "a0", "é"]);
        assert!(prefixes.is_empty());
        let (objs, prefixes, _) = list_all(&s, ListRequest::dir("")).await;
        assert_eq!(objs, vec!["a-", "a.", "a0", "é"]);
        assert_eq!(prefixes, vec!["a/"]);
        // start_after is a key position: keys after it still roll up.
        let (objs, prefixes, _) = list_all(
            &s,
            ListRequest {
                start_after: Some("a/".into()),
                ..ListRequest::dir("")
            },
        )
        .await;
        assert_eq!(objs, vec!["a0", "é"]);
        assert_eq!(prefixes, vec!["a/"]);
    });
}

#[test]
fn list_versions_markers() {
    rt().block_on(async {
        let s = MemoryStore::new();
        let a1 = put(&s, "a", "1").await.version;
        let a2 = put(&s, "a", "2").await.version;
        let a3 = s.delete("a").await.unwrap().unwrap();
        let b1 = put(&s, "b/x", "1").await.version;
        let c1 = put(&s, "c", "1").await.version;

        let req = ListVersionsRequest {
            max_keys: 2,
            ..Default::default()
        };
        let p1 = s.list_versions(&req).await.unwrap();
        let ids: Vec<_> = p1.versions.iter().map(|v| v.version.clone()).collect();
        assert_eq!(ids, vec![a3, a2.clone()]);
        assert!(p1.versions[0].is_latest && p1.versions[0].is_delete_marker);
        assert!(!p1.versions[1].is_latest);
        assert_eq!(p1.next_key_marker.as_deref(), Some("a"));
        assert_eq!(p1.next_version_marker, Some(a2));
        let p2 = s
            .list_versions(&ListVersionsRequest {
                key_marker: p1.next_key_marker,
                version_marker: p1.next_version_marker,
                ..req.clone()
            })
            .await
            .unwrap();
        let ids: Vec<_> = p2.versions.iter().map(|v| v.version.clone()).collect();
        assert_eq!(ids, vec![a1, b1]);

        // Delimited: the prefix b/ ends a page, the next resumes after it.
        let req = ListVersionsRequest {
            delimiter: Some("/".into()),
            key_marker: Some("a".into()),
            max_keys: 1,
            ..Default::default()
        };
        let p = s.list_versions(&req).await.unwrap();
        assert_eq!(p.common_prefixes, vec!["b/".to_string()]);
        assert_eq!(p.next_key_marker.as_deref(), Some("b/"));
        assert_eq!(p.next_version_marker, None);
        let p = s
            .list_versions(&ListVersionsRequest {
                key_marker: p.next_key_marker,
                ..req
            })
            .await
            .unwrap();
        assert_eq!(p.versions.len(), 1);
        assert_eq!(p.versions[0].version, c1);
        assert!(p.common_prefixes.is_empty());
        assert_eq!(p.next_key_marker, None);
    });
}

#[test]
fn delete_version_and_undelete() {
    rt().block_on(async {
        let s = MemoryStore::new();
        assert_eq!(s.delete("k").await.unwrap(), None);
        let v1 = put(&s, "k", "one").await.version;
        let m = s.delete("k").await.unwrap().unwrap();
        assert_eq!(s.delete("k").await.unwrap(), None);
        assert_eq!(
            s.head("k", None).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            s.head("k", Some(m.clone())).await.unwrap_err().kind(),
            ErrorKind::NoSuchVersion
        );
        s.delete_version("k", m.clone()).await.unwrap();
        assert_eq!(s.head("k", None).await.unwrap().version, v1);
        assert_eq!(
            s.delete_version("k", m).await.unwrap_err().kind(),
            ErrorKind::NoSuchVersion
        );
        s.delete_version("k", v1.clone()).await.unwrap();
        assert_eq!(
            s.delete_version("k", v1).await.unwrap_err().kind(),
            ErrorKind::NoSuchVersion
        );
        assert!(s.objects_is_empty());
    });
}

#[test]
fn multipart_complete_checks_and_keeps_upload_on_failure() {
    rt().block_on(async {
        let s = MemoryStore::new();
        let src = put(&s, "src", "0123456789").await;
        let id = s
            .create_multipart(
                "m",
                PutOptions {
                    metadata: [("x".to_string(), "y".to_string())].into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let p2 = s.upload_part("m", &id, 2, "-tail".into()).await.unwrap();
        let p1 = s
            .upload_part_copy("m", &id, 1, "src", Some(src.version), Some(2..5))
            .await
            .unwrap();
        assert_eq!(p1.size, 3);
        let bad = [
            CompletedPart {
                part_number: 2,
                etag: p2.etag.clone(),
            },
            CompletedPart {
                part_number: 1,
                etag: p1.etag.clone(),
            },
        ];
        assert_eq!(
            s.complete_multipart("m", &id, &bad)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidPart
        );
        assert_eq!(
            s.complete_multipart("other", &id, &bad)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NoSuchUpload
        );
        let good = [
            CompletedPart {
                part_number: 1,
                etag: p1.etag.clone(),
            },
            CompletedPart {
                part_number: 2,
                etag: p2.etag.clone(),
            },
        ];
        let info = s.complete_multipart("m", &id, &good).await.unwrap();
        assert!(info.etag.ends_with("-2"));
        assert_eq!(info.metadata.get("x").map(String::as_str), Some("y"));
        let got = s.get("m", GetOptions::default()).await.unwrap();
        assert_eq!(&got.bytes().await.unwrap()[..], b"234-tail");
        assert_eq!(
            s.list_parts("m", &id).await.unwrap_err().kind(),
            ErrorKind::NoSuchUpload
        );
    });
}

impl MemoryStore {
    fn objects_is_empty(&self) -> bool {
        self.lock().objects.is_empty()
    }
}
