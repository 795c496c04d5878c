//! The memory budget shared by every write handle of a mount (`--max-memory`).
//!
//! Buffered, not yet uploaded bytes hold permits of one semaphore, in units of [`UNIT`]
//! bytes; a writer that needs more waits until uploads finish and give theirs back. So that
//! writers never wait forever on memory held by files that are open but idle, a writer that
//! has waited a while asks the other writers (those not busy right now) to spill: complete
//! their upload so far into a version (a checkpoint), which frees their buffers.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{FsError, FsResult};
use crate::write::{WriteCtx, WriterCell};

/// Accounting unit of the budget.
pub const UNIT: usize = 64 * 1024;

/// How long a writer waits for memory before asking idle writers to spill.
const SPILL_AFTER: Duration = Duration::from_millis(200);

/// The budget.
pub struct MemBudget {
    sem: Arc<Semaphore>,
    total_units: usize,
    writers: Mutex<Vec<Weak<WriterCell>>>,
}

impl MemBudget {
    /// A budget of `max_memory` bytes (at least a few units).
    pub fn new(max_memory: usize) -> MemBudget {
        let total_units = (max_memory / UNIT).clamp(16, Semaphore::MAX_PERMITS);
        MemBudget {
            sem: Arc::new(Semaphore::new(total_units)),
            total_units,
            writers: Mutex::new(Vec::new()),
        }
    }

    /// Units for `bytes`.
    pub fn units(bytes: usize) -> usize {
        bytes.div_ceil(UNIT)
    }

    /// Bytes not held by any buffer now.
    pub fn available(&self) -> usize {
        self.sem.available_permits() * UNIT
    }

    /// Bytes of the whole budget.
    pub fn total(&self) -> usize {
        self.total_units * UNIT
    }

    /// Makes `w` a candidate for spilling.
    pub fn register(&self, w: &Arc<WriterCell>) {
        if let Ok(mut ws) = self.writers.lock() {
            ws.retain(|x| x.strong_count() > 0);
            ws.push(Arc::downgrade(w));
        }
    }

    /// Permits for `units` units if they are free now, without waiting.
    pub fn try_acquire(&self, units: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(units.clamp(1, self.total_units)).ok()?;
        self.sem.clone().try_acquire_many_owned(n).ok()
    }

    /// Permits for `units` units, or `None` when memory stays exhausted and no other writer
    /// could give any back: then the caller must checkpoint itself (its own buffers hold the
    /// memory) and ask again. Waits for uploads to give memory back, and asks idle writers to
    /// spill when that takes long.
    pub async fn acquire(
        &self,
        ctx: &WriteCtx,
        units: usize,
    ) -> FsResult<Option<OwnedSemaphorePermit>> {
        let units = units.clamp(1, self.total_units);
        let n =
            u32::try_from(units).map_err(|_| FsError::Internal(format!("{units} memory units")))?;
        loop {
            if let Ok(p) = self.sem.clone().try_acquire_many_owned(n) {
                return Ok(Some(p));
            }
            match tokio::time::timeout(SPILL_AFTER, self.sem.clone().acquire_many_owned(n)).await {
                Ok(Ok(p)) => return Ok(Some(p)),
                Ok(Err(_)) => return Err(FsError::Internal("memory budget closed".into())),
                Err(_) => {}
            }
            let others: Vec<Arc<WriterCell>> = match self.writers.lock() {
                Ok(ws) => ws.iter().filter_map(Weak::upgrade).collect(),
                Err(_) => Vec::new(),
            };
            let mut spilled = 0usize;
            for w in others {
                // Busy writers (this one included) are skipped: they free memory by
                // themselves as their uploads finish, or spill themselves.
                if let Ok(mut g) = w.try_lock() {
                    if g.buffered_bytes() > 0 {
                        tracing::info!(key = %g.key, "write memory exhausted: checkpointing an idle file");
                        let _ = g.checkpoint(ctx).await;
                        spilled += 1;
                    }
                }
            }
            if spilled == 0 {
                return match tokio::time::timeout(
                    SPILL_AFTER,
                    self.sem.clone().acquire_many_owned(n),
                )
                .await
                {
                    Ok(Ok(p)) => Ok(Some(p)),
                    Ok(Err(_)) => Err(FsError::Internal("memory budget closed".into())),
                    Err(_) => Ok(None),
                };
            }
        }
    }
}
