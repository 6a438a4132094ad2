//! Change notifications: every job written by the controller is published
//! here, after its transaction commits: by creating requests, by cancelling
//! (the flagged jobs) and by the scheduler. The server-sent-events endpoint
//! forwards the ones of the job request it watches, and the scheduler keeps
//! its view of the active jobs current with them.
//!
//! A `tokio::sync::broadcast` channel: publishing never blocks and costs
//! nothing without subscribers. A subscriber that falls behind by more than
//! the channel's capacity is told so (`Lagged`) and re-reads the request from
//! the store, so it never shows a stale state for long.

use std::sync::Arc;

use tokio::sync::broadcast;
use warden_state::Job;

/// Capacity of the channel (jobs).
const CAPACITY: usize = 32_768;

/// The publisher.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Job>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A new channel.
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(CAPACITY);
        Events { tx }
    }

    /// Publishes a job as it now is.
    pub fn publish(&self, job: Job) {
        // No subscribers is fine.
        let _ = self.tx.send(Arc::new(job));
    }

    /// A receiver of every job published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.tx.subscribe()
    }
}
