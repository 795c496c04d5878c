//! Tests of the bucket's kept answers (recent.rs).

use super::*;
use crate::types::VersionId;

fn info(key: &str) -> ObjectInfo {
    ObjectInfo {
        key: key.into(),
        version: VersionId::null(),
        size: 1,
        modified: std::time::UNIX_EPOCH,
        etag: String::new(),
        metadata: Default::default(),
    }
}

fn page(keys: &[&str], prefixes: &[&str], more: bool) -> ListPage {
    ListPage {
        objects: keys.iter().map(|k| info(k)).collect(),
        common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        next_token: more.then(|| "token".to_string()),
    }
}

fn recent() -> Recent {
    Recent::new(Duration::from_secs(60), Duration::from_secs(60))
}

#[test]
fn answers_are_kept_for_the_ttl_and_forgotten_on_change() {
    let r = recent();
    let t = r.ticket();
    r.keep_head(t, "a/b/c", Some(info("a/b/c")));
    r.keep_head(t, "a/x", None);
    r.keep_page(t, "a/b/", None, &page(&[], &[], false));
    r.keep_page(t, "a/b/c/", None, &page(&[], &[], false));
    r.keep_page(t, "a/b", None, &page(&[], &[], false)); // not a directory prefix: not kept
    assert_eq!(r.head("a/b/c").unwrap().unwrap().key, "a/b/c");
    assert_eq!(r.head("a/x"), Some(None));
    assert!(r.head("a/y").is_none());
    assert!(r.empty_below("a/b/") && r.empty_below("a/b/c/"));
    assert!(!r.empty_below("a/b"));
    // Nothing below a/b/: neither a/b/ (a marker) nor a/b/z exists.
    assert_eq!(r.head("a/b/"), Some(None));
    assert_eq!(r.head("a/b/z"), Some(None));
    assert!(r.head("a/q").is_none());
    // A change of a/b/c/d forgets the prefixes above it, not the HEAD of a/x.
    r.now_exists("a/b/c/d");
    assert!(!r.empty_below("a/b/c/"));
    assert_eq!(r.head("a/x"), Some(None));
    r.forget("a/x");
    assert!(r.head("a/x").is_none());
}

#[test]
fn an_answer_to_a_request_sent_before_a_change_of_its_keys_is_not_kept() {
    let r = recent();
    let t = r.ticket();
    r.forget("d/elsewhere");
    // Answers about other keys are kept ...
    r.keep_head(t, "k", None);
    r.keep_page(t, "k/", None, &page(&[], &[], false));
    assert_eq!(r.head("k"), Some(None));
    assert!(r.empty_below("k/"));
    // ... not those the change may have altered: a listing of a directory above it.
    r.keep_page(t, "", None, &page(&["x"], &[], false));
    r.keep_page(t, "d/", None, &page(&["d/x"], &[], false));
    assert!(r.head("y").is_none() && r.head("d/y").is_none());
    let t = r.ticket();
    r.forget("k");
    r.keep_head(t, "k", None);
    assert!(r.head("k").is_none());
    // Past the number of changes remembered one by one, every older answer is refused.
    let t = r.ticket();
    for i in 0..MAX_ANSWERS + 1 {
        r.forget(&format!("z/{i}"));
    }
    r.keep_head(t, "k", None);
    assert!(r.head("k").is_none());
}

#[test]
fn nothing_is_kept_without_a_ttl_or_past_it() {
    let r = Recent::new(Duration::ZERO, Duration::ZERO);
    r.keep_head(r.ticket(), "k", None);
    r.keep_page(r.ticket(), "", None, &page(&["x"], &[], false));
    assert!(r.head("k").is_none() && r.head("y").is_none());
    let r = Recent::new(Duration::from_millis(1), Duration::from_millis(1));
    r.keep_head(r.ticket(), "k", None);
    r.keep_page(r.ticket(), "", None, &page(&["x"], &[], false));
    std::thread::sleep(Duration::from_millis(5));
    assert!(r.head("k").is_none() && r.head("y").is_none());
}

#[test]
fn an_open_asks_again_past_the_fresh_window() {
    let r = Recent::new(Duration::from_secs(60), Duration::from_millis(1));
    r.keep_head(r.ticket(), "k", Some(info("k")));
    r.keep_page(r.ticket(), "", None, &page(&["k"], &[], false));
    std::thread::sleep(Duration::from_millis(5));
    assert!(r.head("k").unwrap().is_some());
    assert!(r.head_for_open("k").is_none());
    // The listing's negative answers are for names, not for opens.
    assert_eq!(r.head("nope"), Some(None));
    assert!(r.head_for_open("nope").is_none());
}

#[test]
fn a_whole_listing_answers_for_the_names_it_did_not_show() {
    let r = recent();
    let t = r.ticket();
    r.keep_page(t, "d/", None, &page(&["d/f1", "d/f2"], &["d/sub/"], false));
    // Files it showed are not known (their attributes need a HEAD); others are absent.
    assert!(r.head("d/f1").is_none());
    assert_eq!(r.head("d/g1"), Some(None));
    assert!(r.empty_below("d/g1/") && r.empty_below("d/f1/"));
    assert!(!r.empty_below("d/sub/"));
    assert!(
        r.head("d/sub/").is_none(),
        "a listed subdirectory's marker is not known"
    );
    assert_eq!(r.head("d/other/"), Some(None));
    // Deeper keys are answered by their own directory's listing only.
    assert!(r.head("d/sub/x").is_none());
    assert!(r.head("e/x").is_none());
}

#[test]
fn own_changes_write_themselves_into_the_listing() {
    let r = recent();
    r.keep_page(r.ticket(), "d/", None, &page(&["d/f1", "d/f2"], &[], false));
    r.keep_page(r.ticket(), "", None, &page(&[], &["d/"], false));
    // mv d/f1 d/g1
    r.now_absent("d/f1");
    r.now_exists("d/g1");
    assert_eq!(r.head("d/f1"), Some(None));
    assert!(r.head("d/g1").is_none());
    assert!(!r.empty_below("d/g1/") || r.head("d/g1").is_none());
    // The root's listing lost d/'s certainty only through a delete below it.
    assert_eq!(
        r.head("other"),
        None,
        "the root's listing went with the delete below it"
    );
    // A new subdirectory shows in its parent.
    r.now_exists("d/new/x");
    assert!(!r.empty_below("d/new/"));
    assert!(r.head("d/new/").is_none());
    // The delete of a marker drops its parent's listing (other keys may keep the prefix).
    r.now_absent("d/new/");
    assert!(r.head("d/zzz").is_none());
    // A change of unknown outcome drops the listings above.
    r.keep_page(r.ticket(), "d/", None, &page(&["d/f2"], &[], false));
    assert_eq!(r.head("d/zzz"), Some(None));
    r.unknown("d/zzz");
    assert!(r.head("d/zzz").is_none() && r.head("d/q").is_none());
}

#[test]
fn pages_chain_up_and_only_cover_what_they_listed() {
    let r = recent();
    r.keep_page(r.ticket(), "d/", None, &page(&["d/a", "d/c"], &[], true));
    assert_eq!(r.head("d/b"), Some(None));
    assert!(r.head("d/e").is_none(), "past the first page: unknown");
    // A page that starts after the covered part does not chain.
    r.keep_page(r.ticket(), "d/", Some("d/d"), &page(&["d/e"], &[], false));
    assert!(r.head("d/f").is_none());
    r.keep_page(
        r.ticket(),
        "d/",
        Some("d/c"),
        &page(&["d/e"], &["d/s/"], false),
    );
    assert_eq!(r.head("d/f"), Some(None));
    assert!(r.head("d/e").is_none() && r.head("d/s/").is_none());
    // A one-key listing from the start that agrees does not shorten it ...
    r.keep_page(r.ticket(), "d/", None, &page(&["d/a"], &[], true));
    assert_eq!(r.head("d/f"), Some(None));
    // ... one that disagrees (another machine's change) replaces it.
    r.keep_page(r.ticket(), "d/", None, &page(&["d/0"], &[], true));
    assert!(r.head("d/f").is_none());
    assert!(r.head("d/0").is_none());
}

#[test]
fn levels_name_each_directory_above_a_key() {
    let l: Vec<_> = Recent::levels("a/b/c").collect();
    assert_eq!(l, vec![("a/b/", "c"), ("a/", "b/"), ("", "a/")]);
    let l: Vec<_> = Recent::levels("a/b/").collect();
    assert_eq!(l, vec![("a/", "b/"), ("", "a/")]);
    assert_eq!(Recent::levels("x").collect::<Vec<_>>(), vec![("", "x")]);
}

#[test]
fn a_marker_is_an_entry_of_its_own_listing() {
    let r = recent();
    // The listing below d/ shows the marker d/ itself: not empty.
    r.keep_page(r.ticket(), "d/", None, &page(&["d/"], &[], false));
    assert!(!r.empty_below("d/"));
    r.now_absent("d/");
    assert!(r.empty_below("d/"));
    r.now_exists("d/");
    assert!(!r.empty_below("d/"));
    r.unknown("d/");
    assert!(!r.empty_below("d/"));
    // A listing that found nothing, then the marker made: not empty any more.
    r.keep_page(r.ticket(), "e/", None, &page(&[], &[], false));
    assert!(r.empty_below("e/"));
    r.now_exists("e/");
    assert!(!r.empty_below("e/"));
}

#[test]
fn an_empty_directory_made_here_answers_for_the_names_created_in_it() {
    let r = recent();
    // The lookup before a mkdir found nothing below n/ (an undelimited listing of one key);
    // the mkdir makes the marker.
    r.keep_empty(r.ticket(), "n/");
    assert_eq!(r.stats().dirs, 0);
    r.now_exists("n/");
    assert!(!r.empty_below("n/"));
    assert_eq!(r.stats().dirs, 1);
    // The lookups of names created in it are answered without a request ...
    assert_eq!(r.head("n/f0"), Some(None));
    assert!(r.empty_below("n/f0/"));
    r.now_exists("n/f0");
    assert!(r.head("n/f0").is_none(), "its HEAD is the bucket's to say");
    assert!(r.empty_below("n/f0/"), "a file: nothing below it");
    // ... as are the renames' destinations; the source is gone.
    assert_eq!(r.head("n/g0"), Some(None));
    r.now_absent("n/f0");
    r.now_exists("n/g0");
    assert_eq!(r.head("n/f0"), Some(None));
    assert!(r.head("n/g0").is_none());
    // A deeper key made below an empty prefix lists its directory there.
    r.keep_empty(r.ticket(), "p/");
    r.now_exists("p/q/r");
    assert_eq!(r.head("p/other"), Some(None));
    assert!(!r.empty_below("p/q/"));
    // An outcome not known forgets it all.
    r.unknown("n/g0");
    assert!(r.head("n/h0").is_none());
}

#[test]
fn an_emptiness_past_the_ttl_does_not_become_a_listing() {
    let r = Recent::new(Duration::from_millis(30), Duration::from_millis(30));
    r.keep_empty(r.ticket(), "n/");
    std::thread::sleep(Duration::from_millis(40));
    r.now_exists("n/");
    assert_eq!(r.stats().dirs, 0);
    assert!(r.head("n/f0").is_none());
}
