//! Erasing several devices at once (`disk_erasure_concurrency`), each on its own blocking
//! thread so that no erase ever runs on tokio's async workers.

use std::sync::Arc;
use tokio::sync::Semaphore;

/// Runs `f` over `items`, at most `limit` at a time, each on a blocking thread. Results come
/// back in the order of `items`; a panicking job yields `Err` with the panic's description.
pub async fn run_bounded<T, R, F>(items: Vec<T>, limit: usize, f: F) -> Vec<Result<R, String>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> R + Send + Sync + 'static,
{
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    let f = Arc::new(f);
    let tasks: Vec<_> = items
        .into_iter()
        .map(|item| {
            let (permits, f) = (permits.clone(), f.clone());
            tokio::spawn(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _permit = permits.acquire_owned().await.map_err(|e| e.to_string())?;
                tokio::task::spawn_blocking(move || f(item))
                    .await
                    .map_err(|e| format!("the erase thread stopped unexpectedly: {e}"))
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(match t.await {
            Ok(r) => r,
            Err(e) => Err(format!("the erase task stopped unexpectedly: {e}")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn never_more_than_the_limit_at_once_and_results_in_order() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let out = run_bounded((0..10).collect(), 3, move |i: u32| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            r.fetch_sub(1, Ordering::SeqCst);
            i * 2
        })
        .await;
        let values: Vec<u32> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_crash() {
        let out = run_bounded(vec![1, 2], 0, |i: u32| {
            if i == 2 {
                panic!("boom");
            }
            i
        })
        .await;
        assert_eq!(out[0], Ok(1));
        assert!(out[1]
            .as_ref()
            .unwrap_err()
            .contains("stopped unexpectedly"));
    }
}
