//! Dedicated threads for work that holds a core for a long time (argon2id hashes, RSA
//! signatures): one thread per core, fed through one queue, so that such work never
//! runs on the async workers (where it would stall every request queued behind it) and
//! never on more threads than there are cores (where it would only add context switches
//! and evict each other's working sets from the caches, never throughput).

use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// A set of threads, one per core, taking jobs from one queue in order.
#[derive(Debug)]
pub struct Pool {
    sender: crossbeam_channel::Sender<Job>,
}

impl Pool {
    /// Starts the threads, named `{name}-{i}`. With `idle`, a thread that waited that
    /// long for a job runs the function given (to give back memory it holds).
    pub fn start(name: &str, idle: Option<(Duration, fn())>) -> std::io::Result<Pool> {
        let (sender, receiver) = crossbeam_channel::unbounded::<Job>();
        for i in 0..std::thread::available_parallelism().map_or(1, usize::from) {
            let receiver = receiver.clone();
            std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                loop {
                    let job = match idle {
                        Some((after, then)) => match receiver.recv_timeout(after) {
                            Ok(job) => job,
                            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                                then();
                                continue;
                            }
                            // A closed queue ends the thread.
                            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                        },
                        None => match receiver.recv() {
                            Ok(job) => job,
                            Err(crossbeam_channel::RecvError) => return,
                        },
                    };
                    // A panicking job must not take its thread with it: with all of them
                    // gone, every request that needs one would wait forever.
                    drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
                }
            })?;
        }
        Ok(Pool { sender })
    }

    /// Runs `work` on one of the threads and waits for its result without blocking the
    /// async workers. `started` runs on that thread first. A request cancelled before its
    /// turn costs no work.
    pub async fn run<T: Send + 'static>(
        &self,
        started: fn(),
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            started();
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        if self.sender.send(job).is_err() {
            started();
            anyhow::bail!("the worker threads are gone");
        }
        Ok(result.await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    fn nothing() {}

    #[tokio::test]
    async fn jobs_run_off_the_caller_and_a_panic_leaves_the_threads_working() {
        let pool = Pool::start("test-pool", None).expect("threads");
        let caller = std::thread::current().id();
        let ran_on = pool.run(nothing, || std::thread::current().name().map(str::to_owned)).await.expect("ran");
        assert!(ran_on.is_some_and(|n| n.starts_with("test-pool-")), "ran on the caller's thread");
        assert_ne!(pool.run(nothing, || std::thread::current().id()).await.expect("ran"), caller);
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        for _ in 0..threads {
            assert!(pool.run(nothing, || panic!("a job that panics")).await.is_err());
        }
        assert_eq!(pool.run(nothing, || 2 + 2).await.expect("still working"), 4);
    }
}
