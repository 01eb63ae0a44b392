//! Group commit for the local beacon path: many requests, one transaction.
//!
//! Each request hands its event to a bounded queue and waits for the
//! transaction that stores it; a writer task takes whatever has queued (up
//! to [`MAX_BATCH`] events, or what arrives within [`LINGER`] of the first),
//! writes it with [`EventStore::write`] and tells every waiter the outcome.
//! A request is answered 2xx only after its event is committed; a full queue
//! or a failed write answers 503 and the sender retries.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use shared::AnonymisedEvent;
use tokio::sync::{mpsc, oneshot};

use crate::ingest::EventStore;

pub const MAX_BATCH: usize = 4_000;
/// Transactions in flight at once: while one waits for its commit to reach
/// disk, the next batch is already being copied.
pub const WRITERS: usize = 4;
pub const LINGER: Duration = Duration::from_millis(4);
/// Events waiting at most, unless configured otherwise; beyond it requests
/// are refused with 503.
pub const QUEUE_CAPACITY: NonZeroUsize = NonZeroUsize::new(50_000).unwrap();

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CommitError {
    #[error("the ingest queue is full")]
    QueueFull,
    #[error("the writer has stopped")]
    WriterGone,
    #[error("write failed: {0}")]
    Write(String),
}

type Waiter = oneshot::Sender<Result<(), CommitError>>;

#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<(AnonymisedEvent, Waiter)>,
}

impl GroupCommitter {
    /// Starts the writer task on the current tokio runtime; at most
    /// `capacity` events wait for a transaction.
    pub fn start(store: Arc<EventStore>, capacity: NonZeroUsize) -> Self {
        let (queue, rx) = mpsc::channel(capacity.get());
        tokio::spawn(writer(store, rx));
        Self { queue }
    }

    /// Events queued and not yet taken by a transaction.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Resolves once the event is committed (or known not to be).
    pub async fn commit(&self, event: AnonymisedEvent) -> Result<(), CommitError> {
        let (done, wait) = oneshot::channel();
        self.queue.try_send((event, done)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CommitError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => CommitError::WriterGone,
        })?;
        wait.await.map_err(|_| CommitError::WriterGone)?
    }
}

async fn writer(store: Arc<EventStore>, mut rx: mpsc::Receiver<(AnonymisedEvent, Waiter)>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(WRITERS));
    while let Some((event, waiter)) = rx.recv().await {
        let mut events = Vec::with_capacity(MAX_BATCH);
        let mut waiters: Vec<Waiter> = Vec::with_capacity(MAX_BATCH);
        events.push(event);
        waiters.push(waiter);
        let deadline = tokio::time::Instant::now() + LINGER;
        while events.len() < MAX_BATCH {
            // Take what is already queued without waiting, then linger.
            match rx.try_recv() {
                Ok((e, w)) => {
                    events.push(e);
                    waiters.push(w);
                }
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((e, w))) => {
                        events.push(e);
                        waiters.push(w);
                    }
                    _ => break,
                },
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let store = store.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = store.write(&events).await.map(drop).map_err(|e| CommitError::Write(e.to_string()));
            crate::metrics::global().observe_commit(started, events.len(), outcome.is_ok());
            drop(slot);
            if let Err(e) = &outcome {
                tracing::warn!(events = events.len(), error = %e, "group commit failed; senders get 503");
            }
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        });
    }
}
