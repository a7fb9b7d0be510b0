//! The Python threads that serve requests.
//!
//! Each thread attaches to the interpreter once for its whole life and
//! detaches only while it waits for the next job: attaching per request
//! costs microseconds and would reset `threading.local`.

use crate::call::{Job, Parked, Resumer, ThreadContext, Work, resume, serve};
use crate::environ::{EnvironBuilder, EnvironSettings};
use crate::response::Budget;
use crate::running::{Overdue, Running, Slow, ThreadSlot};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Python frames are deep: give each thread room beyond Rust's default.
const THREAD_STACK: usize = 8 << 20;

/// A source of whole requests that an idle Python thread takes itself (the
/// server's listener): under load a thread goes from one request to the
/// next with no hand-off and no wake-up (DESIGN.md, "Hot path budget").
/// One idle thread at a time waits on it (the leader); the others wait for
/// queued jobs, so a new connection wakes one thread, not all. See
/// [`JobQueue::wait`] for how the lead passes on without a wake-up per
/// request: with any number of threads, a thread that serves request after
/// request with the GIL wakes nobody.
pub trait Intake: Send + Sync {
    /// A whole request that can be served now, if there is one. Must not
    /// block: it runs with the GIL held.
    fn try_take(&self) -> Option<Job>;
    /// Blocks (without the GIL) until `try_take` may succeed or
    /// [`wake`](Self::wake) is called.
    fn wait(&self);
    /// Ends a [`wait`](Self::wait) early; called before it, ends the next
    /// one (the pool relies on that: a leader may be on its way to wait).
    fn wake(&self);
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Parked responses whose connection has drained: served before new
    /// requests, and even when the budget is spent.
    resumes: VecDeque<Parked>,
    closed: bool,
    intake: Option<Arc<dyn Intake>>,
    /// A thread leads: it is in `Intake::wait`, or back from it and not yet
    /// serving.
    leader: bool,
    /// Counts the times a thread looked for work ([`JobQueue::next`]): a
    /// thread serving request after request moves it, and so does a leader
    /// that leaves the lead for a request (it looked to find one).
    looked: u64,
    deputy: Deputy,
    /// Counts the deputy's wake-ups: an idle pool must leave it resting.
    deputy_woken: u64,
    /// Threads waiting on the condition variable and not yet woken: a
    /// waker counts its wake-up off here at once, so that wake-ups sent
    /// faster than the woken threads run are never lost (a count the woken
    /// thread lowered itself would still include threads already woken).
    followers: usize,
    /// Wake-ups sent and not yet taken by a woken thread.
    wakeups: usize,
    on_request: Option<RequestHook>,
    /// The leader is being patient (see [`JobQueue::lead`]).
    patient: bool,
}

impl Queue {
    /// Counts one waiting follower's wake-up off (see `followers`), for a
    /// notify that follows; false when none waits.
    fn claim_follower(&mut self) -> bool {
        if self.followers == 0 {
            return false;
        }
        self.followers -= 1;
        self.wakeups += 1;
        true
    }
}

/// The idle thread that watches a vacant lead (see [`JobQueue::wait`]).
#[derive(Default, PartialEq)]
enum Deputy {
    #[default]
    None,
    /// Looks every tick.
    Watching,
    /// Sleeps until the lead is left vacant: at the last look it was held,
    /// or there was nothing to lead (no intake, or past the budget).
    Resting,
}

/// How often the deputy looks at a vacant lead (see [`JobQueue::wait`]).
struct Tick(Duration);

impl Default for Tick {
    /// A connection that comes while the thread that left the lead is held
    /// up in its request, and other threads are free, waits at most about
    /// two ticks for one of them.
    fn default() -> Self {
        Tick(Duration::from_millis(1))
    }
}

#[derive(Default)]
struct JobQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Where the deputy waits.
    watch: Condvar,
    tick: Tick,
    /// Where a patient leader waits (see [`JobQueue::lead`]).
    patience: Condvar,
    /// Threads running a job.
    serving: AtomicUsize,
    /// Jobs begun so far: whether the serving threads make progress.
    started: AtomicU64,
    /// The bytes held for responses on their way to clients: past its
    /// limit, no new request is taken.
    budget: Arc<Budget>,
    /// Parked responses queued to go on, or going on.
    resuming: AtomicUsize,
}

/// How long a leader that sees a request waits for the threads serving
/// with the GIL to take it themselves before it takes the GIL (see
/// [`JobQueue::lead`]). Far longer than a small request takes, far
/// shorter than the interpreter's switch interval (5 ms).
const PATIENCE: Duration = Duration::from_micros(500);

/// What an idle thread found.
enum Wait {
    /// Look again: a job was queued.
    Again,
    /// Look again: the intake may have a request. The thread still leads
    /// (see [`JobQueue::wait`]).
    Led,
    Closed,
}

impl JobQueue {
    /// A parked response to go on with, a job, or a request from the
    /// intake, without blocking. Past the budget, only the first.
    fn next(&self) -> Option<Work> {
        let (intake, hook) = {
            let mut queue = self.queue.lock().unwrap();
            queue.looked += 1;
            if let Some(parked) = queue.resumes.pop_front() {
                return Some(Work::Resume(parked));
            }
            if self.budget.over() {
                return None;
            }
            let hook = queue.on_request.clone();
            match queue.jobs.pop_front() {
                Some(job) => {
                    drop(queue);
                    if let Some(hook) = hook {
                        hook();
                    }
                    return Some(Work::New(job));
                }
                None => (queue.intake.clone()?, hook),
            }
        };
        let job = intake.try_take()?;
        if let Some(hook) = hook {
            hook();
        }
        Some(Work::New(job))
    }

    /// Whether a thread would find work in the queue (not the intake).
    fn has_work(&self, queue: &Queue) -> bool {
        !queue.resumes.is_empty() || (!queue.jobs.is_empty() && !self.budget.over())
    }

    /// Whether an idle thread should watch the intake: not past the
    /// budget (new requests then wait in the listen backlog).
    fn intake_open(&self, queue: &Queue) -> Option<Arc<dyn Intake>> {
        queue.intake.clone().filter(|_| !self.budget.over())
    }

    /// Waits until there may be work; called without the GIL. `leading`:
    /// this thread led and has not stepped down since.
    ///
    /// A thread that returns from the intake's wait stays the leader until
    /// it has a request: while it waits for the GIL, the thread that holds
    /// it serves what the intake has (handing the lead on at once would
    /// wake a follower only to have it wait for the GIL too: a convoy).
    ///
    /// With a request, the leader leaves the lead vacant
    /// ([`JobQueue::vacate`]) and wakes no one to take it: a short request
    /// brings it back to the lead before anyone else is needed. One idle
    /// thread, the deputy, takes the lead if it stays vacant from one look
    /// to the next, a tick apart, with no thread coming back for work
    /// meanwhile: the request is held up (waiting without the GIL on a
    /// database, say) and other threads could serve. It then serves what
    /// the intake has without the leader's patience (the serving thread
    /// made no progress for a tick already). The deputy ticks while the
    /// lead is vacant, and rests, to be woken by the next vacancy, once it
    /// finds the lead held. So while requests end within a tick, the lead
    /// costs at most about two wake-ups per tick at any rate of requests,
    /// where waking a follower to lead at each request (to wait for the
    /// GIL, or go back to sleep) cost a wake-up, a poll and two context
    /// switches per request: a fifth of hello's CPU behind nginx with
    /// `--threads 8`. A request held up costs a few wake-ups more (the
    /// deputy's looks, and the wake-up of the thread that becomes deputy
    /// in its place). The price: a connection that comes while the last
    /// leader's request is held up waits up to about two ticks for a free
    /// thread.
    fn wait(&self, leading: bool) -> Wait {
        // Whether this thread, as the deputy, found the last leader held
        // up: it then leads without patience.
        let mut held_up = false;
        let mut queue = self.queue.lock().unwrap();
        if leading {
            queue.leader = false;
        }
        if queue.patient {
            // This thread stopped serving: the leader need wait no more.
            self.patience.notify_one();
        }
        loop {
            if self.has_work(&queue) {
                // This thread goes to work. If it was the deputy, another
                // idle thread is; if the lead is vacant, the deputy takes
                // it after a tick, as when a leader leaves it for a
                // request: otherwise connections wait in the backlog while
                // threads sleep.
                self.fill_deputy(&mut queue);
                if queue.intake.is_some() && !queue.leader {
                    self.watch_lead(queue);
                }
                return Wait::Again;
            }
            if queue.closed {
                return Wait::Closed;
            }
            if let Some(intake) = self.intake_open(&queue)
                && !queue.leader
            {
                queue.leader = true;
                self.fill_deputy(&mut queue);
                drop(queue);
                self.lead(&*intake, !held_up);
                return Wait::Led;
            }
            if queue.deputy == Deputy::None {
                (queue, held_up) = self.deputize(queue);
                continue;
            }
            queue.followers += 1;
            queue = self.ready.wait(queue).unwrap();
            if queue.wakeups > 0 {
                queue.wakeups -= 1;
            } else {
                // A spurious wake-up: nobody counted this one off.
                queue.followers -= 1;
            }
        }
    }

    /// The leader's wait: until the intake may have a request that no
    /// thread serving with the GIL is about to take.
    ///
    /// A thread that serves with the GIL takes the next request itself when
    /// it is done (`next`). Were the leader to take the GIL as soon as the
    /// intake is ready, it would wait for it, and after the interpreter's
    /// switch interval (5 ms) force the serving thread off in the middle of
    /// its request: more CPU and a 5 ms tail with `--threads 8` than with
    /// `--threads 1`. So while other threads serve and keep beginning new
    /// jobs, the leader waits without the GIL, for [`PATIENCE`] at a time.
    /// It takes the GIL when nobody serves (a serving thread that goes idle
    /// ends its patience at once), or when the serving threads began no
    /// job in that time: they are held up (a slow request, an application
    /// waiting on a database), and this thread serves what came meanwhile.
    /// `patient`: false when the deputy takes the lead from a thread held
    /// up for a tick already.
    fn lead(&self, intake: &dyn Intake, patient: bool) {
        loop {
            intake.wait();
            if !patient {
                return;
            }
            let started = self.started.load(Ordering::Acquire);
            let mut queue = self.queue.lock().unwrap();
            if self.serving.load(Ordering::Acquire) == 0
                || queue.closed
                || queue.intake.is_none()
                || self.has_work(&queue)
                || self.budget.over()
            {
                return;
            }
            queue.patient = true;
            let (mut queue, _) = self.patience.wait_timeout(queue, PATIENCE).unwrap();
            queue.patient = false;
            let progress = self.started.load(Ordering::Acquire) != started;
            if self.serving.load(Ordering::Acquire) == 0 || !progress || queue.closed {
                return;
            }
        }
    }

    /// This thread is the deputy until the lead has been vacant for a
    /// whole tick, or there is work, or the queue closes (see
    /// [`JobQueue::wait`]). Returns whether it found the last leader held
    /// up (the lead vacant a whole tick).
    fn deputize<'a>(&self, mut queue: MutexGuard<'a, Queue>) -> (MutexGuard<'a, Queue>, bool) {
        queue.deputy = Deputy::Watching;
        let mut seen = queue.looked;
        let mut held_up = false;
        loop {
            let ticked;
            queue = if queue.deputy == Deputy::Resting {
                ticked = false;
                self.watch.wait(queue).unwrap()
            } else {
                let (queue, waited) = self.watch.wait_timeout(queue, self.tick.0).unwrap();
                ticked = waited.timed_out();
                queue
            };
            queue.deputy_woken += 1;
            if self.has_work(&queue) || queue.closed {
                break;
            }
            let vacant = !queue.leader && self.intake_open(&queue).is_some();
            if queue.deputy == Deputy::Resting {
                // Woken for another reason than a vacancy (room in the
                // budget, a new intake): a lead nobody holds is taken now.
                if vacant {
                    break;
                }
                continue;
            }
            if !vacant {
                // Held (or nothing to lead): nothing to watch until the
                // next vacancy.
                queue.deputy = Deputy::Resting;
            } else if !ticked {
                // Woken early (a wake-up for all, or a spurious one): not
                // a whole tick yet.
                continue;
            } else if queue.looked == seen {
                // Vacant since the last look, a whole tick, and no thread
                // came for work meanwhile: the one that left the lead is
                // held up in its request.
                held_up = true;
                break;
            }
            seen = queue.looked;
        }
        queue.deputy = Deputy::None;
        (queue, held_up)
    }

    /// A thread leaves [`JobQueue::wait`] (to work, or to lead): if the
    /// deputy's place is empty, a waiting thread takes it.
    fn fill_deputy(&self, queue: &mut Queue) {
        if queue.deputy == Deputy::None && queue.claim_follower() {
            self.ready.notify_one();
        }
    }

    /// The leader has a request to serve: it leaves the lead vacant (see
    /// [`JobQueue::wait`]).
    fn vacate(&self) {
        let mut queue = self.queue.lock().unwrap();
        queue.leader = false;
        self.watch_lead(queue);
    }

    /// The lead has just been left vacant: the deputy takes it unless a
    /// thread does within a tick.
    fn watch_lead(&self, mut queue: MutexGuard<'_, Queue>) {
        if queue.deputy == Deputy::Resting {
            queue.deputy = Deputy::Watching;
            drop(queue);
            self.watch.notify_one();
        }
    }

    /// A thread's life: serves what it finds until the queue closes.
    /// `wait` is [`JobQueue::wait`], called without the GIL.
    fn work(&self, mut serve: impl FnMut(Work), mut wait: impl FnMut(bool) -> Wait) {
        let mut leading = false;
        loop {
            if let Some(job) = self.next() {
                if std::mem::take(&mut leading) {
                    self.vacate();
                }
                self.serving.fetch_add(1, Ordering::AcqRel);
                self.started.fetch_add(1, Ordering::Release);
                serve(job);
                self.serving.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            match wait(leading) {
                Wait::Again => leading = false,
                Wait::Led => leading = true,
                Wait::Closed => break,
            }
        }
    }

    fn wake_all(&self, queue: &mut Queue) {
        queue.wakeups += std::mem::take(&mut queue.followers);
        self.ready.notify_all();
        self.watch.notify_all();
    }

    /// Wakes one waiting thread, if there is one, once the queue is
    /// unlocked: woken under the lock, it would at once wait for the lock
    /// (a second sleep and wake-up). Waking after the unlock loses nothing:
    /// wake-ups are counted, not addressed, so whichever waiting thread
    /// wakes takes one, and one that comes to wait meanwhile is counted
    /// among the followers.
    fn wake_one(&self, mut queue: MutexGuard<'_, Queue>) {
        if queue.claim_follower() {
            drop(queue);
            self.ready.notify_one();
        }
    }

    fn push(&self, job: Job) {
        let mut queue = self.queue.lock().unwrap();
        queue.jobs.push_back(job);
        self.wake_for(queue);
    }

    /// Queues a parked response whose connection has drained (called on
    /// the I/O thread, or on the thread that parked it).
    fn resume(&self, parked: Parked) {
        self.resuming.fetch_add(1, Ordering::AcqRel);
        let mut queue = self.queue.lock().unwrap();
        queue.resumes.push_back(parked);
        self.wake_for(queue);
    }

    /// Room came back in the budget: every idle thread looks again (one
    /// goes back to watching the intake).
    fn room(&self) {
        let mut queue = self.queue.lock().unwrap();
        self.wake_all(&mut queue);
        if let Some(intake) = &queue.intake {
            intake.wake();
        }
    }

    /// Wakes a thread for what was just queued.
    fn wake_for(&self, queue: MutexGuard<'_, Queue>) {
        if queue.followers > 0 {
            self.wake_one(queue);
        } else if queue.leader
            && let Some(intake) = &queue.intake
        {
            // It looks at the queue before the intake.
            intake.wake();
        } else if queue.deputy != Deputy::None {
            drop(queue);
            self.watch.notify_one();
        }
    }

    fn set_intake(&self, intake: Option<Arc<dyn Intake>>) {
        let mut queue = self.queue.lock().unwrap();
        let old = std::mem::replace(&mut queue.intake, intake);
        if let Some(old) = old {
            old.wake();
        }
        self.patience.notify_all();
        self.wake_all(&mut queue);
    }

    fn close(&self) {
        let mut queue = self.queue.lock().unwrap();
        queue.closed = true;
        if let Some(intake) = queue.intake.take() {
            intake.wake();
        }
        self.patience.notify_all();
        self.wake_all(&mut queue);
    }
}

/// Called on a Python thread as it starts each request (see
/// [`PythonPool::on_request`]).
pub type RequestHook = Arc<dyn Fn() + Send + Sync>;

/// A fixed set of Python threads running one application.
pub struct PythonPool {
    queue: Arc<JobQueue>,
    running: Arc<Running>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl PythonPool {
    /// Starts `threads` threads serving `app`.
    pub fn start(
        app: &Py<PyAny>,
        threads: usize,
        settings: EnvironSettings,
    ) -> std::io::Result<PythonPool> {
        let threads = threads.max(1);
        let queue = Arc::new(JobQueue::default());
        let weak = Arc::downgrade(&queue);
        queue.budget.on_room(Box::new(move || {
            if let Some(queue) = weak.upgrade() {
                queue.room();
            }
        }));
        let running = Arc::new(Running::new(threads));
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let app = Python::attach(|py| app.clone_ref(py));
            let queue = queue.clone();
            let settings = settings.clone();
            let running = running.clone();
            let handle = std::thread::Builder::new()
                .name(format!("python-{index}"))
                .stack_size(THREAD_STACK)
                .spawn(move || run_thread(app, queue, settings, running, index))?;
            handles.push(handle);
        }
        Ok(PythonPool {
            queue,
            running,
            threads: Mutex::new(handles),
        })
    }

    /// Runs `hook` as each request starts, on its Python thread, whether
    /// it was queued or taken from the intake (a worker process counts its
    /// requests with it, for --max-requests).
    pub fn on_request(&self, hook: RequestHook) {
        self.queue.queue.lock().unwrap().on_request = Some(hook);
    }

    /// Queues a request; a free thread picks it up (past the budget,
    /// once room comes back).
    pub fn submit(&self, job: Job) {
        self.queue.push(job);
    }

    /// Bounds the bytes held for responses on their way to clients that
    /// read slowly or not at all (see [`Budget`]): past `bytes`, new
    /// requests wait.
    pub fn limit_response_memory(&self, bytes: usize) {
        self.queue.budget.set_limit(bytes);
    }

    /// The bytes held now for responses on their way to clients.
    pub fn response_memory(&self) -> usize {
        self.queue.budget.held()
    }

    /// Lets idle threads take requests from `intake` themselves; `None`
    /// stops that (the listener is closing).
    pub fn set_intake(&self, intake: Option<Arc<dyn Intake>>) {
        self.queue.set_intake(intake);
    }

    /// Answers the requests running longer than `limit` (see
    /// [`Overdue`]); each is reported once.
    pub fn expire(&self, limit: std::time::Duration) -> Vec<Overdue> {
        self.running.expire(limit)
    }

    /// Requests running longer than `limit`, each reported once (see
    /// [`Slow`]).
    pub fn slow(&self, limit: std::time::Duration) -> Vec<Slow> {
        self.running.slow(limit)
    }

    /// Threads still running a request that timed out (`expire`): joining
    /// them could wait for ever.
    pub fn stuck_threads(&self) -> usize {
        self.running.stuck()
    }

    /// Once the I/O loop is gone (the worker stops): gives the threads up
    /// to `limit` to go on with the responses it left parked, each of
    /// which finds its connection gone and calls the application's
    /// `close()`. Returns whether they all did.
    pub fn close_parked(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.queue.resuming.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Lets the threads finish what is queued, then joins them.
    pub fn shutdown(&self) {
        self.queue.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for handle in threads {
            let _ = handle.join();
        }
    }
}

fn run_thread(
    app: Py<PyAny>,
    queue: Arc<JobQueue>,
    settings: EnvironSettings,
    running: Arc<Running>,
    index: usize,
) {
    Python::attach(|py| {
        // SAFETY: a plain query of the current thread's identifier.
        let thread: u64 = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        let slot = ThreadSlot {
            running,
            index,
            thread,
        };
        let app = app.into_bound(py);
        let mut environ = match EnvironBuilder::new(py, settings) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::error!("a Python thread could not start: {e}");
                return;
            }
        };
        let resumer: Resumer = {
            let queue = queue.clone();
            Arc::new(move |parked| queue.resume(parked))
        };
        let ctx = ThreadContext {
            slot: &slot,
            budget: &queue.budget,
            resumer: &resumer,
        };
        queue.work(
            |work| match work {
                Work::New(job) => serve(py, &app, &mut environ, &ctx, job),
                Work::Resume(parked) => {
                    resume(py, &ctx, parked);
                    queue.resuming.fetch_sub(1, Ordering::AcqRel);
                }
            },
            |leading| py.detach(|| queue.wait(leading)),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{SpoolLimits, body_pipe};
    use crate::response::{ResponseTarget, response_channel};
    use rustgi_model::Request;
    use std::time::Duration;

    /// Pool threads, more than this machine has cores, so that they
    /// interleave in every way.
    const THREADS: usize = 6;
    const ROUNDS: usize = 5000;
    /// Far more than a round takes when no wake-up is lost.
    const PATIENCE: Duration = Duration::from_secs(3);

    fn job(id: u64) -> Job {
        let (_writer, body) = body_pipe(Some(0), SpoolLimits::default());
        let (sender, _receiver) = response_channel(1024);
        Job {
            id,
            request_id: bytes::Bytes::from(format!("t-{id}")),
            verdict: None,
            front: rustgi_observe::Front::Scgi,
            request: Arc::new(Request::default()),
            body,
            streams: Vec::new(),
            response: ResponseTarget::Channel(sender),
            errors_to_peer: false,
        }
    }

    #[test]
    fn past_the_budget_new_jobs_wait_until_room_comes_back() {
        let queue = Arc::new(JobQueue::default());
        let weak = Arc::downgrade(&queue);
        queue.budget.on_room(Box::new(move || {
            if let Some(queue) = weak.upgrade() {
                queue.room();
            }
        }));
        queue.budget.set_limit(100);
        queue.budget.hold(150);
        queue.push(job(1));
        assert!(queue.next().is_none(), "over the budget: the job waits");
        let waiting = std::thread::spawn({
            let queue = queue.clone();
            move || matches!(queue.wait(false), Wait::Again)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiting.is_finished(),
            "an idle thread sleeps, it does not spin"
        );
        queue.budget.release(100);
        assert!(waiting.join().unwrap(), "room wakes it");
        assert!(matches!(queue.next(), Some(Work::New(job)) if job.id == 1));
    }

    /// With nothing to serve, the deputy finds the lead held at its first
    /// look and rests: an idle server wakes no thread every tick.
    #[test]
    fn an_idle_pools_deputy_rests() {
        let queue = Arc::new(JobQueue::default());
        let intake = Arc::new(FakeIntake::default());
        queue.set_intake(Some(intake.clone()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    queue.work(|_| unreachable!("no work"), |leading| queue.wait(leading))
                })
            })
            .collect();
        // A tick is 1 ms: a deputy that never rests looks about 200 times.
        std::thread::sleep(Duration::from_millis(200));
        let woken = queue.queue.lock().unwrap().deputy_woken;
        queue.close();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(
            woken <= 3,
            "an idle deputy rests: woken {woken} times in 200 ms"
        );
    }

    /// A listener whose connections the test hands in.
    #[derive(Default)]
    struct FakeIntake {
        /// Requests waiting, and whether `wake` was called since the last
        /// `wait` returned.
        state: Mutex<(VecDeque<Job>, bool)>,
        changed: Condvar,
    }

    impl FakeIntake {
        fn offer(&self, job: Job) {
            self.state.lock().unwrap().0.push_back(job);
            self.changed.notify_all();
        }
    }

    impl Intake for FakeIntake {
        fn try_take(&self) -> Option<Job> {
            self.state.lock().unwrap().0.pop_front()
        }

        fn wait(&self) {
            let state = self.state.lock().unwrap();
            let mut state = self
                .changed
                .wait_while(state, |(jobs, woken)| jobs.is_empty() && !*woken)
                .unwrap();
            state.1 = false;
        }

        fn wake(&self) {
            self.state.lock().unwrap().1 = true;
            self.changed.notify_all();
        }
    }

    /// Each round's jobs hold their thread until the whole round runs at
    /// once: a job left waiting (queued, or in the intake) while a thread
    /// sleeps keeps the round from ever being whole.
    #[derive(Default)]
    struct Rounds {
        /// Jobs started, over all rounds.
        started: Mutex<usize>,
        changed: Condvar,
        /// The first round that was never whole.
        stalled: Mutex<Option<String>>,
    }

    impl Rounds {
        /// Serves job `id` (of round `id / THREADS`).
        fn serve(&self, id: u64) {
            let whole = (usize::try_from(id).unwrap() / THREADS + 1) * THREADS;
            let mut started = self.started.lock().unwrap();
            *started += 1;
            self.changed.notify_all();
            let (started, waited) = self
                .changed
                .wait_timeout_while(started, PATIENCE, |started| *started < whole)
                .unwrap();
            if waited.timed_out() {
                let mut stalled = self.stalled.lock().unwrap();
                let round = whole / THREADS - 1;
                let running = *started + THREADS - whole;
                stalled.get_or_insert(format!(
                    "round {round}: {running} of {THREADS} jobs could start"
                ));
            }
        }

        /// Waits until every job of the rounds so far has started.
        fn wait_for(&self, jobs: usize) {
            let started = self.started.lock().unwrap();
            let _all = self
                .changed
                .wait_timeout_while(started, 2 * PATIENCE, |started| *started < jobs)
                .unwrap();
        }
    }

    /// A tiny deterministic generator: which jobs go where, in which order.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Every round, as many jobs as threads arrive, some queued from
    /// outside (as the I/O thread does), the others through the intake
    /// (as connections a Python thread accepts), in a random order and
    /// split: each must find a thread while the others run. A wake-up lost
    /// (a notify that woke nobody, or an intake nobody watches any more)
    /// leaves a job waiting until a thread comes back, which in this test
    /// never happens before the round is whole.
    #[test]
    fn every_job_finds_a_thread_and_the_intake_is_always_watched() {
        // A short tick: a round may wait for the deputy once per job.
        let queue = Arc::new(JobQueue {
            tick: Tick(Duration::from_micros(100)),
            ..JobQueue::default()
        });
        let intake = Arc::new(FakeIntake::default());
        queue.set_intake(Some(intake.clone()));
        let rounds = Arc::new(Rounds::default());
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (queue, rounds) = (queue.clone(), rounds.clone());
                std::thread::spawn(move || {
                    queue.work(
                        |work| match work {
                            Work::New(job) => rounds.serve(job.id),
                            Work::Resume(_) => unreachable!("nothing parks here"),
                        },
                        |leading| queue.wait(leading),
                    );
                })
            })
            .collect();
        let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..ROUNDS {
            let through_intake = random.below(THREADS + 1);
            let mut intake_left = through_intake;
            let mut queued_left = THREADS - through_intake;
            for id in round * THREADS..(round + 1) * THREADS {
                let job = job(id as u64);
                if queued_left == 0 || (intake_left > 0 && random.below(2) == 0) {
                    intake_left -= 1;
                    intake.offer(job);
                } else {
                    queued_left -= 1;
                    queue.push(job);
                }
            }
            rounds.wait_for((round + 1) * THREADS);
            if let Some(stalled) = rounds.stalled.lock().unwrap().as_ref() {
                panic!("a lost wake-up: {stalled}");
            }
        }
        queue.close();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*rounds.started.lock().unwrap(), ROUNDS * THREADS);
    }
}
