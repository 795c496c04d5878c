//! The disk cache's LRU index: which block files exist, their sizes, and their order of use,
//! bounded by a byte limit. Pure: it only says which files to delete; the caller deletes them.

use lru::LruCache;

/// Block files by name, least recently used first, with their total size.
pub struct Index {
    lru: LruCache<String, u64>,
    bytes: u64,
    limit: u64,
}

impl Index {
    /// An empty index that holds at most `limit` bytes of files.
    pub fn new(limit: u64) -> Index {
        Index {
            lru: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// Bytes of the files indexed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Files indexed.
    pub fn len(&self) -> usize {
        self.lru.len()
    }

    /// Whether no file is indexed.
    pub fn is_empty(&self) -> bool {
        self.lru.is_empty()
    }

    /// The byte limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Marks `name` as just used; false when it is not indexed.
    pub fn touch(&mut self, name: &str) -> bool {
        self.lru.get(name).is_some()
    }

    /// Adds (or replaces) `name` as the most recently used file and returns the files to
    /// delete to stay within the limit, least recently used first (`name` itself when it
    /// alone is over the limit).
    #[must_use]
    pub fn insert(&mut self, name: String, size: u64) -> Vec<String> {
        if let Some(old) = self.lru.put(name, size) {
            self.bytes -= old;
        }
        self.bytes += size;
        let mut evicted = Vec::new();
        while self.bytes > self.limit {
            match self.lru.pop_lru() {
                Some((n, s)) => {
                    self.bytes -= s;
                    evicted.push(n);
                }
                None => break,
            }
        }
        evicted
    }

    /// Forgets `name` (its file is gone or refused).
    pub fn remove(&mut self, name: &str) {
        if let Some(s) = self.lru.pop(name) {
            self.bytes -= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut ix = Index::new(300);
        assert!(ix.insert("a".into(), 100).is_empty());
        assert!(ix.insert("b".into(), 100).is_empty());
        assert!(ix.insert("c".into(), 100).is_empty());
        assert!(ix.touch("a"));
        assert_eq!(ix.insert("d".into(), 100), vec!["b".to_string()]);
        assert_eq!(ix.bytes(), 300);
        assert_eq!(ix.insert("e".into(), 250), vec!["c", "a", "d"]);
        assert_eq!(ix.bytes(), 250);
        ix.remove("e");
        assert!(ix.is_empty());
        assert_eq!(ix.bytes(), 0);
        assert_eq!(ix.insert("huge".into(), 301), vec!["huge".to_string()]);
        assert!(!ix.touch("huge"));
    }

    #[test]
    fn replacing_a_name_counts_it_once() {
        let mut ix = Index::new(1000);
        let _ = ix.insert("a".into(), 100);
        let _ = ix.insert("a".into(), 150);
        assert_eq!((ix.len(), ix.bytes()), (1, 150));
    }
}
