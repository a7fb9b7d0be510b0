//! The Python threads that serve requests.
//!
//! Each thread attaches to the interpreter once for its whole life and
//! detaches only while it waits for the next job: attaching per request
//! costs microseconds and would reset `threading.local`.

use crate::call::{Job, serve};
use crate::environ::{EnvironBuilder, EnvironSettings};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Python frames are deep: give each thread room beyond Rust's default.
const THREAD_STACK: usize = 8 << 20;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

#[derive(Default)]
struct JobQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl JobQueue {
    fn try_pop(&self) -> Option<Job> {
        self.queue.lock().unwrap().jobs.pop_front()
    }

    /// Waits for a job; `None` once the queue is closed and empty.
    fn pop(&self) -> Option<Job> {
        let queue = self.queue.lock().unwrap();
        let mut queue = self
            .ready
            .wait_while(queue, |q| q.jobs.is_empty() && !q.closed)
            .unwrap();
        queue.jobs.pop_front()
    }
}

/// Called with each request as it is queued (see [`PythonPool::on_submit`]).
pub type SubmitHook = Box<dyn Fn() + Send + Sync>;

/// A fixed set of Python threads running one application.
pub struct PythonPool {
    queue: Arc<JobQueue>,
    threads: Vec<JoinHandle<()>>,
    on_submit: Option<SubmitHook>,
}

impl PythonPool {
    /// Starts `threads` threads serving `app`.
    pub fn start(
        app: &Py<PyAny>,
        threads: usize,
        settings: EnvironSettings,
    ) -> std::io::Result<PythonPool> {
        let queue = Arc::new(JobQueue::default());
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads.max(1) {
            let app = Python::attach(|py| app.clone_ref(py));
            let queue = queue.clone();
            let settings = settings.clone();
            let handle = std::thread::Builder::new()
                .name(format!("python-{index}"))
                .stack_size(THREAD_STACK)
                .spawn(move || run_thread(app, &queue, settings))?;
            handles.push(handle);
        }
        Ok(PythonPool {
            queue,
            threads: handles,
            on_submit: None,
        })
    }

    /// Runs `hook` each time a request is queued, on the submitting thread
    /// (a worker process counts its requests with it, for --max-requests).
    pub fn on_submit(&mut self, hook: SubmitHook) {
        self.on_submit = Some(hook);
    }

    /// Queues a request; a free thread picks it up.
    pub fn submit(&self, job: Job) {
        if let Some(hook) = &self.on_submit {
            hook();
        }
        self.queue.queue.lock().unwrap().jobs.push_back(job);
        self.queue.ready.notify_one();
    }

    /// Lets the threads finish what is queued, then joins them.
    pub fn shutdown(self) {
        self.queue.queue.lock().unwrap().closed = true;
        self.queue.ready.notify_all();
        for handle in self.threads {
            let _ = handle.join();
        }
    }
}

fn run_thread(app: Py<PyAny>, queue: &JobQueue, settings: EnvironSettings) {
    Python::attach(|py| {
        let app = app.into_bound(py);
        let mut environ = match EnvironBuilder::new(py, settings) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::error!("a Python thread could not start: {e}");
                return;
            }
        };
        loop {
            let job = match queue.try_pop() {
                Some(job) => job,
                None => match py.detach(|| queue.pop()) {
                    Some(job) => job,
                    None => break,
                },
            };
            serve(py, &app, &mut environ, job);
        }
    });
}
