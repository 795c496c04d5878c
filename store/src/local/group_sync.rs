//! Group commit: many threads asking for durability share one fsync.
//!
//! A caller that needs "everything I wrote is durable" registers, then either runs the sync
//! itself (if none is running) or waits for one that *started after it registered* — a sync
//! that was already running may have missed its writes. One sync thus serves every caller that
//! arrived while the previous one ran.

use std::sync::{Condvar, Mutex};

use crate::error::{Result, StoreError};

#[derive(Default)]
struct State {
    /// Tickets handed out.
    requested: u64,
    /// Every ticket up to this one is durable.
    completed: u64,
    running: bool,
    /// The last sync's failure, with the highest ticket it covered. Every caller it covered
    /// gets the same error (a full disk stays `NoSpace`), not a generic one.
    failed: Option<(u64, StoreError)>,
}

/// Coalesces durability requests.
#[derive(Default)]
pub struct GroupSync {
    state: Mutex<State>,
    cv: Condvar,
}

impl GroupSync {
    /// Returns once a run of `action` that started after this call has finished.
    pub fn sync(&self, action: impl Fn() -> Result<()>) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.requested += 1;
        let ticket = s.requested;
        loop {
            if s.completed >= ticket {
                return match &s.failed {
                    Some((covered, e)) if *covered >= ticket => Err(e.duplicate()),
                    _ => Ok(()),
                };
            }
            if !s.running {
                s.running = true;
                let target = s.requested;
                drop(s);
                let result = action();
                s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.running = false;
                s.completed = s.completed.max(target);
                s.failed = result.as_ref().err().map(|e| (target, e.duplicate()));
                self.cv.notify_all();
                result?;
                continue;
            }
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn many_callers_share_few_syncs() {
        let g = Arc::new(GroupSync::default());
        let runs = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (g, runs) = (g.clone(), runs.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        g.sync(|| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = runs.load(Ordering::SeqCst);
        assert!(
            n < 320,
            "expected coalescing, got {n} syncs for 320 requests"
        );
        assert!(n >= 20);
    }

    #[test]
    fn failure_reaches_the_callers_it_covered() {
        let g = GroupSync::default();
        assert!(g
            .sync(|| Err(StoreError::Metadata("disk gone".into())))
            .is_err());
        assert!(g.sync(|| Ok(())).is_ok());
    }

    #[test]
    fn a_failed_sync_keeps_its_cause_for_every_waiter() {
        use crate::error::ErrorKind;
        let g = Arc::new(GroupSync::default());
        let started = Arc::new(std::sync::Barrier::new(2));
        let runner = {
            let (g, started) = (g.clone(), started.clone());
            std::thread::spawn(move || {
                g.sync(|| {
                    started.wait();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Err(StoreError::NoSpace("volume 7".into()))
                })
            })
        };
        started.wait();
        // Registered while the first sync runs: served by the next run, which fails too.
        let waiter = g.sync(|| {
            Err(StoreError::io(
                "fsync",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ))
        });
        let first = runner.join().unwrap().unwrap_err();
        assert_eq!(first.kind(), ErrorKind::NoSpace, "{first}");
        assert_eq!(waiter.unwrap_err().kind(), ErrorKind::NoSpace);
        // A caller covered by a failed run it did not run itself gets the same kind.
        let g = GroupSync::default();
        let mut s = g.state.lock().unwrap();
        s.requested = 1;
        s.completed = 2;
        s.failed = Some((2, StoreError::NoSpace("disk".into())));
        drop(s);
        assert_eq!(g.sync(|| Ok(())).unwrap_err().kind(), ErrorKind::NoSpace);
    }
}
