//! Closed-loop HTTP load: C workers, each with a client of its own (so one HTTP/1.1
//! keep-alive connection each), take the next request index from a shared counter until all
//! N are done. Every request is timed from just before it is sent to its body read, and the
//! answer's status and parsed value are kept by index.

use std::future::Future;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::summary::thousands;

/// What one request produced.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    /// HTTP status; `None` when the request failed on the wire (connection, timeout).
    pub status: Option<u16>,
    /// What was read from the answer.
    pub value: T,
    /// Times the request was repeated because the server asked to (503 with `Retry-After`).
    pub retries: u32,
}

/// A request done.
#[derive(Debug, Clone)]
pub struct Done<T> {
    /// Its index, `0..N`.
    pub index: usize,
    /// Time from sending to the answer's body, microseconds (retries included).
    pub latency_us: u64,
    /// When the answer's body was read, microseconds since the load started.
    pub finished_us: u64,
    /// The answer.
    pub answer: Answer<T>,
}

/// A finished load.
#[derive(Debug)]
pub struct LoadRun<T> {
    /// Every request, in index order.
    pub done: Vec<Done<T>>,
    /// First request sent → last answer read.
    pub wall: Duration,
}

/// A client for one worker: HTTP/1.1 only, keep-alive, no proxy, Nagle off.
pub fn worker_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(Duration::from_secs(300))
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building an HTTP client")
}

/// Sends `count` requests from `concurrency` workers; `request(client, index)` makes request
/// `index` with the worker's client. `finished` counts answered requests as they come (for a
/// concurrent observer); `label` names the requests in progress lines.
pub async fn run<T, F, Fut>(
    label: &str,
    count: usize,
    concurrency: usize,
    clients: &[reqwest::Client],
    finished: Arc<AtomicUsize>,
    request: F,
) -> anyhow::Result<LoadRun<T>>
where
    T: Send + 'static,
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer<T>> + Send,
{
    anyhow::ensure!(
        clients.len() >= concurrency.min(count),
        "{} clients for {concurrency} workers",
        clients.len()
    );
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let started = Instant::now();
    let mut workers = Vec::new();
    for client in clients.iter().take(concurrency.min(count)) {
        let (client, next, finished, request) = (
            client.clone(),
            Arc::clone(&next),
            Arc::clone(&finished),
            Arc::clone(&request),
        );
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return done;
                }
                let sent = Instant::now();
                let answer = request(client.clone(), index).await;
                done.push(Done {
                    index,
                    latency_us: sent.elapsed().as_micros() as u64,
                    finished_us: started.elapsed().as_micros() as u64,
                    answer,
                });
                finished.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = tokio::spawn(report_progress(
        label.to_owned(),
        count,
        Arc::clone(&finished),
        started,
    ));
    let mut done = Vec::with_capacity(count);
    for worker in workers {
        done.extend(worker.await.context("a load worker panicked")?);
    }
    let wall = started.elapsed();
    progress.abort();
    done.sort_by_key(|d| d.index);
    Ok(LoadRun { done, wall })
}

/// A line on stderr every few seconds (every second on a terminal) while a load runs.
async fn report_progress(label: String, count: usize, finished: Arc<AtomicUsize>, since: Instant) {
    let every = if std::io::stderr().is_terminal() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    loop {
        tokio::time::sleep(every).await;
        let n = finished.load(Ordering::Relaxed);
        let secs = since.elapsed().as_secs_f64();
        eprintln!(
            "  {label}: {} / {} in {secs:.1} s ({}/s)",
            thousands(n as u64),
            thousands(count as u64),
            thousands((n as f64 / secs.max(1e-9)).round() as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_index_is_done_once_by_the_workers() {
        let clients: Vec<reqwest::Client> = (0..4)
            .map(|_| worker_client(Duration::from_secs(1)).expect("client"))
            .collect();
        let finished = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&finished);
        let run = run(
            "test",
            50,
            4,
            &clients,
            counter,
            |_client, index| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Answer {
                    status: Some(200),
                    value: index * 2,
                    retries: 0,
                }
            },
        )
        .await
        .expect("runs");
        assert_eq!(run.done.len(), 50);
        assert_eq!(finished.load(Ordering::Relaxed), 50);
        for (i, done) in run.done.iter().enumerate() {
            assert_eq!((done.index, done.answer.value), (i, i * 2));
            assert!(done.latency_us >= 1_000, "{}", done.latency_us);
        }
        assert!(run.wall >= Duration::from_millis(12));
    }
}
