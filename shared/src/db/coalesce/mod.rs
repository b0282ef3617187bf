//! Concurrent look-ups of the same kind answered by one statement.
//!
//! Every authenticated request reads its caller (status, role ids, session
//! liveness) by primary key. Run one statement each, PostgreSQL spends more
//! on waking a backend, receiving, locking seven relations and sending than on
//! the look-up itself. A [`Coalescer`] runs at most `max_in_flight` batches at
//! once; a look-up arriving while they are all busy waits for the next one,
//! which then answers everything that queued in one `= ANY`-style statement.
//! An idle service answers each request as soon as it comes (a batch of one);
//! a busy one pays the fixed cost once per batch instead of once per request.
//!
//! Nothing is cached: every caller is still read by a statement that starts
//! after the request arrived, so a revocation or suspension committed before
//! the request is seen as with one statement per request.
//!
//! The batches run in their own tasks, so a request dropped by its client
//! (its future cancelled) cannot strand the requests queued behind it. Every
//! batch has a deadline and every look-up one of twice that, so a database
//! that stops answering turns into 503s, never into requests that wait for
//! ever; and the queue is bounded (beyond it, 503 at once).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::Instrument;

use crate::error::Error;

/// What a batch answers: one value (or none) per key, in the keys' order.
pub type BatchFuture<V> = Pin<Box<dyn Future<Output = sqlx::Result<Vec<Option<V>>>> + Send>>;

type Reply<V> = oneshot::Sender<Result<Option<V>, Failure>>;
/// A queued look-up: its key, where its answer goes, and its request's span
/// (a batch's statements are logged in the span of its first request).
type Waiting<K, V> = (K, Reply<V>, tracing::Span);
type Batch<K, V> = Vec<Waiting<K, V>>;

/// How many look-ups may wait, in batches: beyond `max_in_flight ×
/// max_batch × QUEUED_BATCHES` a look-up is refused with 503 at once.
const QUEUED_BATCHES: usize = 8;

/// Look-ups by `K` answered in batches by `run`.
pub struct Coalescer<K, V> {
    shared: Arc<Shared<K, V>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, V> std::fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("max_in_flight", &self.shared.max_in_flight)
            .field("max_batch", &self.shared.max_batch)
            .field("deadline", &self.shared.deadline)
            .finish_non_exhaustive()
    }
}

struct Shared<K, V> {
    run: Box<dyn Fn(Vec<K>) -> BatchFuture<V> + Send + Sync>,
    queue: Mutex<Queue<K, V>>,
    max_in_flight: usize,
    max_batch: usize,
    deadline: Duration,
}

struct Queue<K, V> {
    waiting: VecDeque<Waiting<K, V>>,
    in_flight: usize,
}

/// Why a batch failed, given to each look-up in it (the database error
/// itself is logged once per batch; no client ever sees either).
#[derive(Debug, Clone)]
struct Failure {
    unavailable: bool,
    message: Arc<str>,
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        let err = anyhow::anyhow!("{}", failure.message);
        if failure.unavailable {
            Self::Unavailable(err)
        } else {
            Self::Internal(err)
        }
    }
}

impl Failure {
    fn unavailable(message: &str) -> Self {
        Self {
            unavailable: true,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = ?err, "a batch of look-ups failed");
        let unavailable = matches!(Error::from(err), Error::Unavailable(_));
        Self {
            unavailable,
            message: "a batch of look-ups failed (logged above)".into(),
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Coalescer<K, V> {
    /// At most `max_in_flight` batches (each holds one pooled connection)
    /// of at most `max_batch` keys, each given up after `deadline` (the
    /// pool's acquire timeout plus the statement timeout, and a margin);
    /// `run` answers one batch.
    pub fn new(
        max_in_flight: usize,
        max_batch: usize,
        deadline: Duration,
        run: impl Fn(Vec<K>) -> BatchFuture<V> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                run: Box::new(run),
                queue: Mutex::new(Queue {
                    waiting: VecDeque::new(),
                    in_flight: 0,
                }),
                max_in_flight: max_in_flight.max(1),
                max_batch: max_batch.max(1),
                deadline,
            }),
        }
    }

    /// The value for `key`, read by a statement that starts after this call.
    pub async fn get(&self, key: K) -> Result<Option<V>, Error> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let shared = &self.shared;
            let mut queue = shared.lock();
            let limit = shared.max_in_flight * shared.max_batch * QUEUED_BATCHES;
            if queue.waiting.len() >= limit {
                return Err(Failure::unavailable("too many look-ups waiting").into());
            }
            queue
                .waiting
                .push_back((key, reply, tracing::Span::current()));
            if queue.in_flight < shared.max_in_flight {
                queue.in_flight += 1;
                let slot = Slot {
                    shared: Arc::clone(shared),
                    held: true,
                };
                Some((slot, shared.take(&mut queue)))
            } else {
                None
            }
        };
        if let Some((slot, batch)) = start {
            tokio::spawn(slot.drain(batch));
        }
        // The batch running now, then this look-up's own.
        match tokio::time::timeout(self.shared.deadline * 2, answer).await {
            Ok(Ok(result)) => result.map_err(Error::from),
            Ok(Err(_)) => Err(Error::internal(anyhow::anyhow!(
                "a batch of look-ups ended without answering"
            ))),
            Err(_) => Err(Failure::unavailable("no batch answered in time").into()),
        }
    }
}

impl<K, V> Shared<K, V> {
    fn lock(&self) -> MutexGuard<'_, Queue<K, V>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest `max_batch` look-ups whose requests still wait.
    fn take(&self, queue: &mut Queue<K, V>) -> Batch<K, V> {
        let mut batch = Vec::with_capacity(queue.waiting.len().min(self.max_batch));
        while batch.len() < self.max_batch {
            let Some(waiting) = queue.waiting.pop_front() else {
                break;
            };
            if !waiting.1.is_closed() {
                batch.push(waiting);
            }
        }
        batch
    }
}

/// One of the `max_in_flight` batch slots, taken in [`Coalescer::get`] and
/// given back when its task ends, however it ends.
struct Slot<K, V> {
    shared: Arc<Shared<K, V>>,
    held: bool,
}

impl<K: Send + 'static, V: Send + 'static> Slot<K, V> {
    /// Runs `batch`, then whatever queued meanwhile, until nothing waits.
    async fn drain(mut self, mut batch: Batch<K, V>) {
        loop {
            let span = batch
                .first()
                .map_or_else(tracing::Span::none, |(_, _, span)| span.clone());
            let (keys, replies): (Vec<K>, Vec<_>) = batch
                .into_iter()
                .map(|(key, reply, _)| (key, reply))
                .unzip();
            let outcome = if keys.is_empty() {
                Ok(Ok(Vec::new()))
            } else {
                let run = (self.shared.run)(keys).instrument(span.clone());
                tokio::time::timeout(self.shared.deadline, run).await
            };
            let failure = match outcome {
                Ok(Ok(values)) => {
                    // A look-up whose request was dropped no longer listens.
                    for (reply, value) in replies.into_iter().zip(values) {
                        let _ = reply.send(Ok(value));
                    }
                    None
                }
                Ok(Err(err)) => {
                    let failure = span.in_scope(|| Failure::from(err));
                    Some(fail_all(replies, failure))
                }
                Err(_) => Some(fail_all(
                    replies,
                    Failure::unavailable("a batch of look-ups timed out"),
                )),
            };
            let mut queue = self.shared.lock();
            // The database is unreachable or too slow: what queued meanwhile
            // would wait for the same outcome, batch after batch; it is
            // answered 503 now, as each request would have been on its own
            // (its own connection attempt or pool wait failing), only sooner.
            if let Some(failure) = failure.filter(|f| f.unavailable) {
                for (_, reply, _) in queue.waiting.drain(..) {
                    let _ = reply.send(Err(failure.clone()));
                }
            }
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
                self.held = false;
                return;
            }
            batch = self.shared.take(&mut queue);
        }
    }
}

/// Answers each of `replies` with `failure`, and hands it back.
fn fail_all<V>(replies: Vec<Reply<V>>, failure: Failure) -> Failure {
    for reply in replies {
        let _ = reply.send(Err(failure.clone()));
    }
    failure
}

impl<K, V> Drop for Slot<K, V> {
    /// A task that ended early (a panic, a runtime shutting down) gives its
    /// slot back; when no other batch runs, the look-ups still queued fail
    /// at once (their answers' senders dropped) instead of waiting for a
    /// batch that might never start.
    fn drop(&mut self) {
        if self.held {
            let mut queue = self.shared.lock();
            queue.in_flight -= 1;
            if queue.in_flight == 0 {
                queue.waiting.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests;
