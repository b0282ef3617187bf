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
//! (its future cancelled) cannot strand the requests queued behind it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::error::Error;

/// What a batch answers: one value (or none) per key, in the keys' order.
pub type BatchFuture<V> = Pin<Box<dyn Future<Output = sqlx::Result<Vec<Option<V>>>> + Send>>;

type Batch<K, V> = Vec<(K, oneshot::Sender<Result<Option<V>, Failure>>)>;

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
            .finish_non_exhaustive()
    }
}

struct Shared<K, V> {
    run: Box<dyn Fn(Vec<K>) -> BatchFuture<V> + Send + Sync>,
    queue: Mutex<Queue<K, V>>,
    max_in_flight: usize,
    max_batch: usize,
}

struct Queue<K, V> {
    waiting: Batch<K, V>,
    in_flight: usize,
}

/// Why a batch failed, given to each look-up in it (the database error is
/// logged once per request by the error mapping, never sent to a client).
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

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        let message: Arc<str> = err.to_string().into();
        Self {
            unavailable: matches!(Error::from(err), Error::Unavailable(_)),
            message,
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Coalescer<K, V> {
    /// At most `max_in_flight` batches (each holds one pooled connection)
    /// of at most `max_batch` keys; `run` answers one batch.
    pub fn new(
        max_in_flight: usize,
        max_batch: usize,
        run: impl Fn(Vec<K>) -> BatchFuture<V> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                run: Box::new(run),
                queue: Mutex::new(Queue {
                    waiting: Vec::new(),
                    in_flight: 0,
                }),
                max_in_flight: max_in_flight.max(1),
                max_batch: max_batch.max(1),
            }),
        }
    }

    /// The value for `key`, read by a statement that starts after this call.
    pub async fn get(&self, key: K) -> Result<Option<V>, Error> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.shared.lock();
            queue.waiting.push((key, reply));
            if queue.in_flight < self.shared.max_in_flight {
                queue.in_flight += 1;
                Some(self.shared.take(&mut queue))
            } else {
                None
            }
        };
        if let Some(batch) = start {
            tokio::spawn(Arc::clone(&self.shared).drain(batch));
        }
        match answer.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::internal(anyhow::anyhow!(
                "a batch of look-ups ended without answering"
            ))),
        }
    }
}

impl<K: Send + 'static, V: Send + 'static> Shared<K, V> {
    fn lock(&self) -> MutexGuard<'_, Queue<K, V>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest `max_batch` waiting look-ups.
    fn take(&self, queue: &mut Queue<K, V>) -> Batch<K, V> {
        let n = queue.waiting.len().min(self.max_batch);
        queue.waiting.drain(..n).collect()
    }

    /// Runs `batch`, then whatever queued meanwhile, until nothing waits.
    async fn drain(self: Arc<Self>, mut batch: Batch<K, V>) {
        // Gives the slot back if this task ends early (a panic in `run`).
        let mut slot = Slot {
            shared: &self,
            held: true,
        };
        loop {
            let (keys, replies): (Vec<K>, Vec<_>) = batch.into_iter().unzip();
            match (self.run)(keys).await {
                Ok(values) => {
                    // A look-up whose request was dropped no longer listens.
                    for (reply, value) in replies.into_iter().zip(values) {
                        let _ = reply.send(Ok(value));
                    }
                }
                Err(err) => {
                    let failure = Failure::from(err);
                    for reply in replies {
                        let _ = reply.send(Err(failure.clone()));
                    }
                }
            }
            let mut queue = self.lock();
            if queue.waiting.is_empty() {
                queue.in_flight -= 1;
                slot.held = false;
                return;
            }
            batch = self.take(&mut queue);
        }
    }
}

struct Slot<'a, K, V> {
    shared: &'a Shared<K, V>,
    held: bool,
}

impl<K, V> Drop for Slot<'_, K, V> {
    fn drop(&mut self) {
        if self.held {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.in_flight -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A coalescer whose batches double their keys after `delay`, counting
    /// batches and the largest one.
    fn doubling(
        max_in_flight: usize,
        delay: std::time::Duration,
    ) -> (Coalescer<u32, u32>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let batches = Arc::new(AtomicUsize::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let (b, l) = (Arc::clone(&batches), Arc::clone(&largest));
        let coalescer = Coalescer::new(max_in_flight, 8, move |keys: Vec<u32>| {
            b.fetch_add(1, Ordering::SeqCst);
            l.fetch_max(keys.len(), Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(keys
                    .into_iter()
                    .map(|k| (k % 5 != 0).then_some(k * 2))
                    .collect())
            }) as BatchFuture<u32>
        });
        (coalescer, batches, largest)
    }

    #[tokio::test]
    async fn every_key_gets_its_own_answer_and_busy_batches_merge() {
        let (c, batches, largest) = doubling(1, std::time::Duration::from_millis(20));
        let tasks: Vec<_> = (1..=20u32)
            .map(|k| {
                let c = c.clone();
                tokio::spawn(async move { (k, c.get(k).await) })
            })
            .collect();
        for task in tasks {
            let (k, got) = task.await.expect("task");
            assert_eq!(
                got.expect("answer"),
                (k % 5 != 0).then_some(k * 2),
                "key {k}"
            );
        }
        let n = batches.load(Ordering::SeqCst);
        assert!(n < 20, "20 concurrent look-ups took {n} batches");
        assert!(
            largest.load(Ordering::SeqCst) <= 8,
            "a batch exceeded max_batch"
        );
        assert_eq!(c.shared.lock().in_flight, 0, "the slot was not given back");
    }

    #[tokio::test]
    async fn an_idle_coalescer_answers_at_once_in_a_batch_of_one() {
        let (c, batches, largest) = doubling(2, std::time::Duration::ZERO);
        for k in 1..=3u32 {
            assert_eq!(c.get(k).await.expect("answer"), Some(k * 2));
        }
        assert_eq!(batches.load(Ordering::SeqCst), 3);
        assert_eq!(largest.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_look_up_strands_nobody() {
        let (c, _, _) = doubling(1, std::time::Duration::from_millis(30));
        let first = {
            let c = c.clone();
            tokio::spawn(async move { c.get(1).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        // Queued behind the first batch, then dropped by its client.
        let dropped = {
            let c = c.clone();
            tokio::spawn(async move { c.get(2).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        dropped.abort();
        first.abort();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), c.get(3)).await;
        assert_eq!(answer.expect("not stranded").expect("answer"), Some(6));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_look_up_in_it_as_the_error_maps() {
        let c: Coalescer<u32, u32> = Coalescer::new(1, 8, |_keys| {
            Box::pin(async { Err(sqlx::Error::PoolTimedOut) }) as BatchFuture<u32>
        });
        let err = c.get(1).await.expect_err("failed batch");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        let c: Coalescer<u32, u32> = Coalescer::new(1, 8, |_keys| {
            Box::pin(async { Err(sqlx::Error::Protocol("bad".into())) }) as BatchFuture<u32>
        });
        assert!(matches!(c.get(1).await, Err(Error::Internal(_))));
    }
}
