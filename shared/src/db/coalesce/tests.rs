//! The coalescer's own tests: merging, cancellation, failures, deadlines, bounds.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const DEADLINE: Duration = Duration::from_secs(5);

/// A coalescer whose batches double their keys after `delay`, counting
/// batches and the largest one.
fn doubling(
    max_in_flight: usize,
    delay: std::time::Duration,
) -> (Coalescer<u32, u32>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let batches = Arc::new(AtomicUsize::new(0));
    let largest = Arc::new(AtomicUsize::new(0));
    let (b, l) = (Arc::clone(&batches), Arc::clone(&largest));
    let coalescer = Coalescer::new(max_in_flight, 8, DEADLINE, move |keys: Vec<u32>| {
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
    let c: Coalescer<u32, u32> = Coalescer::new(1, 8, DEADLINE, |_keys| {
        Box::pin(async { Err(sqlx::Error::PoolTimedOut) }) as BatchFuture<u32>
    });
    let err = c.get(1).await.expect_err("failed batch");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let c: Coalescer<u32, u32> = Coalescer::new(1, 8, DEADLINE, |_keys| {
        Box::pin(async { Err(sqlx::Error::Protocol("bad".into())) }) as BatchFuture<u32>
    });
    assert!(matches!(c.get(1).await, Err(Error::Internal(_))));
}

/// A batch that never ends (a connection lost without a word): its
/// look-ups fail as unavailable after the deadline, and later ones run.
#[tokio::test]
async fn a_batch_that_never_answers_turns_into_503s() {
    let stuck = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = Arc::clone(&stuck);
    let c: Coalescer<u32, u32> =
        Coalescer::new(1, 8, Duration::from_millis(50), move |keys: Vec<u32>| {
            let stuck = s.load(Ordering::SeqCst);
            Box::pin(async move {
                if stuck {
                    std::future::pending::<()>().await;
                }
                Ok(keys.into_iter().map(Some).collect())
            }) as BatchFuture<u32>
        });
    let waited = tokio::time::timeout(Duration::from_secs(5), c.get(1)).await;
    assert!(
        matches!(waited, Ok(Err(Error::Unavailable(_)))),
        "{waited:?}"
    );
    stuck.store(false, Ordering::SeqCst);
    assert_eq!(c.get(2).await.expect("answer"), Some(2));
}

/// Beyond the bounded queue a look-up is refused at once.
#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let c: Coalescer<u32, u32> = Coalescer::new(1, 1, DEADLINE, |_keys| {
        Box::pin(std::future::pending()) as BatchFuture<u32>
    });
    let waiting: Vec<_> = (0..=QUEUED_BATCHES as u32)
        .map(|k| {
            let c = c.clone();
            tokio::spawn(async move { c.get(k).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = tokio::time::timeout(Duration::from_secs(1), c.get(99)).await;
    assert!(
        matches!(refused, Ok(Err(Error::Unavailable(_)))),
        "{refused:?}"
    );
    for task in waiting {
        task.abort();
    }
}

/// Look-ups queued behind a batch that finds the database unreachable
/// fail with it, not one batch (one connect timeout) later each.
#[tokio::test]
async fn an_outage_fails_the_queue_with_the_batch_that_found_it() {
    let batches = Arc::new(AtomicUsize::new(0));
    let b = Arc::clone(&batches);
    let c: Coalescer<u32, u32> = Coalescer::new(1, 1, DEADLINE, move |_keys| {
        b.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(sqlx::Error::PoolTimedOut)
        }) as BatchFuture<u32>
    });
    let tasks: Vec<_> = (0..5u32)
        .map(|k| {
            let c = c.clone();
            tokio::spawn(async move { c.get(k).await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.expect("task");
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
    }
    assert_eq!(
        batches.load(Ordering::SeqCst),
        1,
        "one batch found the outage"
    );
}
