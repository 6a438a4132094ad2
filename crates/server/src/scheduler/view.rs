//! The scheduler's view of the active jobs, kept current by job events.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::broadcast;
use warden_state::{Job, Store};

/// How often the scheduler re-reads every active job from the database,
/// although events keep its view current (belt and braces).
pub(super) const FULL_RELOAD: std::time::Duration = std::time::Duration::from_secs(300);

/// The scheduler's view of the active jobs: read whole from the database at
/// start (and after a missed event or a failed write, and every
/// [`FULL_RELOAD`]), and kept current in between by the job events that
/// every writer publishes (creates, cancels, the scheduler itself), so a
/// pass costs no database read proportional to the number of waiting jobs.
pub(super) struct View {
    pub(super) rx: broadcast::Receiver<Arc<Job>>,
    pub(super) active: HashMap<String, Tracked>,
    /// Jobs seen finishing since the last reload: late events about them
    /// are ignored.
    pub(super) finished: HashSet<String>,
    pub(super) next_seq: u64,
    pub(super) reload: bool,
    pub(super) reloaded_at: std::time::Instant,
}

pub(super) struct Tracked {
    /// Arrival order: creation order within a job request.
    pub(super) seq: u64,
    pub(super) job: Job,
}

impl View {
    pub(super) fn track(&mut self, job: Job) {
        self.next_seq += 1;
        self.active.insert(
            job.id.clone(),
            Tracked {
                seq: self.next_seq,
                job,
            },
        );
    }

    /// Folds in a published version of a job: a final one leaves the view;
    /// an older one than known is ignored, except that `cancelled` (which
    /// never goes back) is kept from either.
    pub(super) fn merge(&mut self, job: &Job) {
        if self.finished.contains(&job.id) {
            return;
        }
        if job.state.is_final() {
            self.active.remove(&job.id);
            self.finished.insert(job.id.clone());
            return;
        }
        match self.active.get_mut(&job.id) {
            Some(t) => {
                let cancelled = t.job.cancelled || job.cancelled;
                if (job.status_code_updated_at, job.updated_at)
                    >= (t.job.status_code_updated_at, t.job.updated_at)
                {
                    t.job = job.clone();
                }
                t.job.cancelled = cancelled;
            }
            None => self.track(job.clone()),
        }
    }

    /// Brings the view up to date; returns whether it read everything.
    pub(super) async fn refresh(&mut self, store: &Store) -> warden_state::Result<bool> {
        loop {
            if self.reload || self.reloaded_at.elapsed() >= FULL_RELOAD {
                // Whatever was published so far is in the database too.
                while !matches!(
                    self.rx.try_recv(),
                    Err(broadcast::error::TryRecvError::Empty
                        | broadcast::error::TryRecvError::Closed)
                ) {}
                let jobs = store.active_jobs(None).await?;
                self.active.clear();
                self.finished.clear();
                for job in jobs {
                    self.track(job);
                }
                self.reload = false;
                self.reloaded_at = std::time::Instant::now();
                return Ok(true);
            }
            match self.rx.try_recv() {
                Ok(job) => self.merge(&job),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::info!(
                        missed = n,
                        "scheduler fell behind the job events; reloading"
                    );
                    self.reload = true;
                }
                Err(_) => return Ok(false),
            }
        }
    }
}
