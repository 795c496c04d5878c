//! Storage insights benchmark (issue 13): `du --depth 1` read from the per-prefix rollups of a
//! store of 1,000,000 objects (1,000 directories of 1,000 objects of 100 bytes, so every
//! version has an extent and every prefix rows of bytes per volume lineage), against listing
//! one page of 1,000 keys of the same store; and the `--verify` recount rate (version rows
//! per second, all cores, each version's extents resolved to their volume's lineage) against a
//! plain paged listing of every key.
//!
//! Targets (docs/BENCHMARKS.md): `du --depth 1` < 100 ms; recount >= 200,000 keys/s.
//! `OBJFS_BENCH_OBJECTS` changes the 1,000,000 objects (`cargo test --benches`: 20,000).

#[allow(dead_code)] // each bench uses part of what the benches share
mod common;

use std::time::Instant;

use objfs_store::local::{LocalConfig, LocalStore};
use objfs_store::{Change, CopyOptions, ListRequest, ObjectStore, PutOptions};

const DU_TARGET_MS: f64 = 100.0;
const RESCAN_TARGET: f64 = 200_000.0;

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = common::env_usize(
        "OBJFS_BENCH_OBJECTS",
        if quick { 20_000 } else { 1_000_000 },
    );
    let dirs = (n / 1000).max(1);
    let rt = common::rt();
    let dir = common::bench_dir();
    let path = dir.path().join("store");
    let store = LocalStore::init(&path, LocalConfig::default()).expect("init");
    // The first directory by puts of 100-byte objects, each next one as copies of the previous
    // one's keys in one batch (one commit per 1,000 keys: a batch's keys must be distinct;
    // copies share the blobs, so the store holds 1,000 blobs in one volume).
    let per = n / dirs;
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..per {
            let key = format!("d0000/f{i:04}");
            store
                .put(&key, vec![7u8; 100].into(), PutOptions::default())
                .await
                .expect("put");
        }
        for d in 1..dirs {
            let changes: Vec<Change> = (0..per)
                .map(|i| Change::Copy {
                    src: format!("d{:04}/f{i:04}", d - 1),
                    dst: format!("d{d:04}/f{i:04}"),
                    opts: CopyOptions::default(),
                })
                .collect();
            for r in store.change_many(&changes).await.expect("change_many") {
                r.expect("copy");
            }
        }
    });
    store.close().expect("close");
    let store = LocalStore::open(&path).expect("open");
    println!(
        "insights: {n} objects in {dirs} directories (written in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let (mut du_ms, mut page_ms) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let r = store.du("", 1, 0).expect("du");
        du_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.prefixes.len(), dirs + 1);
        assert_eq!(r.prefixes[0].totals.live_objects as usize, n / dirs * dirs);
        assert_eq!(
            r.prefixes[0].tiers.local_replicated_bytes as usize,
            n / dirs * dirs * 100
        );
        let t = Instant::now();
        let req = ListRequest {
            prefix: "d0001/".into(),
            max_keys: 1000,
            ..Default::default()
        };
        let page = rt.block_on(store.list(&req)).expect("list");
        page_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!page.objects.is_empty());
    }
    let (du, page) = (common::median(du_ms), common::median(page_ms));
    println!(
        "  du --depth 1 ({} prefixes)         {du:>9.2} ms  ({:.2}x a page of 1,000 keys: {page:.2} ms; target < {DU_TARGET_MS} ms: {})",
        dirs + 1,
        du / page,
        if du < DU_TARGET_MS { "met" } else { "NOT met" }
    );

    let (mut scan, mut list) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        let c = store.verify_rollups("").expect("verify");
        scan.push(c.versions as f64 / t.elapsed().as_secs_f64());
        assert_eq!(c.mismatch_count, 0, "{:?}", c.mismatches);
        let t = Instant::now();
        let mut keys = 0usize;
        let mut req = ListRequest {
            max_keys: 1000,
            ..Default::default()
        };
        loop {
            let page = rt.block_on(store.list(&req)).expect("list");
            keys += page.objects.len();
            match page.next_token {
                Some(tok) => req.continuation = Some(tok),
                None => break,
            }
        }
        list.push(keys as f64 / t.elapsed().as_secs_f64());
    }
    let (scan, list) = (common::median(scan), common::median(list));
    println!(
        "  verify recount (all cores)        {scan:>9.0} keys/s  ({:.2}x a paged list of every key: {list:.0} keys/s; target >= {RESCAN_TARGET}: {})",
        scan / list,
        if scan >= RESCAN_TARGET { "met" } else { "NOT met" }
    );
    store.close().expect("close");
}
