//! The router's bounded, supervised pool of background work. At most
//! `max_running` tasks run at once and at most `max_queued` wait; past that
//! a task is refused and the caller is handed its label back, so the work
//! it stood for fails visibly (its job learns why) — nothing is dropped with
//! only a log line. A task that panics is reported with its label, not lost.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use agora_client::api::TaskCounts;
use tokio::task::{Id, JoinSet};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A bounded pool of labelled tasks.
pub struct TaskPool<L, T> {
    running: JoinSet<T>,
    labels: HashMap<Id, L>,
    // In a mutex only to make the pool `Sync` (futures need not be);
    // never contended: the pool has one owner.
    queue: VecDeque<(L, Mutex<Boxed<T>>)>,
    max_running: usize,
    max_queued: usize,
    counts: TaskCounts,
}

/// Why a task gave no output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost(pub String);

impl<L, T: Send + 'static> TaskPool<L, T> {
    /// A pool running `max_running` tasks at once with `max_queued` more
    /// waiting.
    pub fn new(max_running: usize, max_queued: usize) -> Self {
        Self {
            running: JoinSet::new(),
            labels: HashMap::new(),
            queue: VecDeque::new(),
            max_running: max_running.max(1),
            max_queued,
            counts: TaskCounts::default(),
        }
    }

    /// Runs `task` now, or queues it; a full queue refuses it and hands
    /// the label back.
    pub fn submit<F>(&mut self, label: L, task: F) -> Result<(), L>
    where
        F: Future<Output = T> + Send + 'static,
    {
        if self.running.len() < self.max_running {
            let handle = self.running.spawn(task);
            self.labels.insert(handle.id(), label);
            self.counts.started += 1;
            Ok(())
        } else if self.queue.len() < self.max_queued {
            self.queue.push_back((label, Mutex::new(Box::pin(task))));
            self.counts.most_queued = self.counts.most_queued.max(self.queue.len() as u64);
            Ok(())
        } else {
            self.counts.refused += 1;
            Err(label)
        }
    }

    /// A task submitted now would run or wait, not be refused.
    pub fn has_room(&self) -> bool {
        self.running.len() < self.max_running || self.queue.len() < self.max_queued
    }

    /// Tasks running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Tasks waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// What the pool has done so far, and holds now.
    pub fn counts(&self) -> TaskCounts {
        TaskCounts {
            running: self.running.len() as u64,
            queued: self.queue.len() as u64,
            ..self.counts
        }
    }

    /// Nothing runs or waits.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.queue.is_empty()
    }

    /// The next task to finish, with its label: its output, or why it has
    /// none (it panicked). Starts waiting tasks as places free. Cancel-safe;
    /// pending forever while the pool is empty.
    pub async fn next(&mut self) -> (L, Result<T, Lost>) {
        loop {
            match self.running.join_next_with_id().await {
                Some(done) => {
                    let (id, result) = match done {
                        Ok((id, output)) => (id, Ok(output)),
                        Err(e) => {
                            self.counts.lost += 1;
                            let why = if e.is_panic() {
                                "the task panicked".to_string()
                            } else {
                                "the task was cancelled".to_string()
                            };
                            (e.id(), Err(Lost(why)))
                        }
                    };
                    self.start_waiting();
                    if let Some(label) = self.labels.remove(&id) {
                        return (label, result);
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn start_waiting(&mut self) {
        while self.running.len() < self.max_running {
            let Some((label, task)) = self.queue.pop_front() else {
                return;
            };
            let task = task.into_inner().unwrap_or_else(|p| p.into_inner());
            self.counts.started += 1;
            let handle = self.running.spawn(task);
            self.labels.insert(handle.id(), label);
        }
    }

    /// Stops every task and forgets the waiting ones (their work is in the
    /// store and resumes on restart); returns the labels of what was cut.
    pub async fn shutdown(&mut self) -> Vec<L> {
        self.running.shutdown().await;
        let mut cut: Vec<L> = self.labels.drain().map(|(_, l)| l).collect();
        cut.extend(self.queue.drain(..).map(|(l, _)| l));
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_queues_then_refuses_and_reports_panics() {
        let mut pool: TaskPool<u32, u32> = TaskPool::new(2, 1);
        let (tx, rx) = tokio::sync::watch::channel(false);
        for label in 0..2 {
            let mut rx = rx.clone();
            pool.submit(label, async move {
                let _ = rx.wait_for(|go| *go).await;
                label * 10
            })
            .unwrap();
        }
        // The third waits; the fourth is refused with its label.
        pool.submit(2, async { panic!("boom") }).unwrap();
        assert!(!pool.has_room());
        assert_eq!(pool.submit(3, async { 30 }), Err(3));
        assert_eq!((pool.running(), pool.queued()), (2, 1));
        tx.send(true).unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(pool.next().await);
        }
        seen.sort_by_key(|(l, _)| *l);
        assert_eq!(seen[0], (0, Ok(0)));
        assert_eq!(seen[1], (1, Ok(10)));
        assert_eq!(seen[2], (2, Err(Lost("the task panicked".into()))));
        assert!(pool.is_empty());
        let c = pool.counts();
        assert_eq!((c.started, c.refused, c.lost, c.most_queued), (3, 1, 1, 1));
    }
}
