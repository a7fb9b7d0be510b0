//! The scoreboard: what every worker is doing and has done, in memory the
//! master shares with its workers (shm.rs), so that the master can show it
//! without asking a worker anything. A busy worker, a stopped one and a
//! dead one read the same.
//!
//! Layout (64-bit words, all atomics): a header (its size, the master's
//! counters, and the [`Totals`] of workers that have ended), then one slot
//! per worker, each with one block per Python thread. A thread writes only
//! its own block: what it runs now (under a seqlock), and the counters of
//! the requests that ended on it. One writer per block means plain relaxed
//! loads and stores on the hot path: no lock, no read-modify-write, no
//! syscall, no cache line shared with another thread. Requests that end
//! elsewhere (a response the I/O loop finished) are counted in one more
//! block per worker, with atomic additions.
//!
//! A slot's life: the master claims a free slot before it forks a worker
//! ([`Board::claim`]), zeroed; the worker attaches to it ([`attach`]) before
//! its Python threads start. When the worker has been reaped (it writes no
//! more), the master folds its counters into the header's totals and frees
//! the slot ([`Board::release`]): totals never go down. A worker that died
//! while writing its running request's text leaves the seqlock odd: the
//! reader says so ([`Running::torn`]) instead of waiting for ever.

mod shm;

use crate::totals::{DURATION_BUCKETS, STATUS_CLASSES, duration_bucket, status_class};
use crate::{Ended, Front, Totals};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

const MAGIC: u64 = u64::from_le_bytes(*b"rgiboard");
/// 3: the request id's room is 128 bytes (a trusted one may be that long),
/// and a field cut to its room is marked so.
const LAYOUT: u64 = 3;

/// Counters the master keeps, in the header so that they survive the
/// master's own re-execution (a `--preload` reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A worker died without being told to (a crash, a kill, the OOM killer).
    RespawnCrash,
    /// A worker retired after `--max-requests`.
    RespawnMaxRequests,
    /// A worker retired over `--reload-on-rss`.
    RespawnRss,
    /// A worker retired after a request ran past `--timeout`.
    RespawnTimeout,
    /// Reloads begun (SIGHUP, `--touch-reload`).
    Reloads,
    /// Workers forked.
    Spawns,
    /// A worker replaced after `--max-worker-lifetime` (last: the words
    /// before keep their place for a board handed over by an older image).
    RespawnLifetime,
}

impl Counter {
    fn word(self) -> usize {
        H_COUNTERS + self as usize
    }
}

/// Why a worker retired: one that retires on its own writes this into its
/// slot before it tells the master; the master writes `Lifetime`, which
/// it decides ([`Board::retired`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retired {
    MaxRequests = 1,
    Rss = 2,
    Timeout = 3,
    Lifetime = 4,
}

// Header words.
const H_MAGIC: usize = 0;
const H_LAYOUT: usize = 1;
const H_WORKERS: usize = 2;
const H_THREADS: usize = 3;
/// The Python version the workers run (text, 4 words), written once.
const H_PYTHON: usize = 4;
const PYTHON_WORDS: usize = 4;
const H_COUNTERS: usize = H_PYTHON + PYTHON_WORDS;
const H_TOTALS: usize = H_COUNTERS + 16;
const HEADER_WORDS: usize = round_up(H_TOTALS + TOTALS_WORDS);

// The Totals' words, in any block that holds counters.
const T_REQUESTS: usize = 0;
const REQUEST_CELLS: usize = Front::ALL.len() * STATUS_CLASSES * Ended::ALL.len();
const T_BUCKETS: usize = T_REQUESTS + REQUEST_CELLS;
const T_SUM_US: usize = T_BUCKETS + DURATION_BUCKETS;
const T_REQUEST_BYTES: usize = T_SUM_US + 1;
const T_RESPONSE_BYTES: usize = T_REQUEST_BYTES + 1;
const TOTALS_WORDS: usize = T_RESPONSE_BYTES + 1;

// Worker slot words (before its thread blocks).
const W_PID: usize = 0;
const W_STARTED_MS: usize = 1;
const W_GENERATION: usize = 2;
const W_RETIRED: usize = 3;
const W_INDEX: usize = 4;
const WORKER_HEAD_WORDS: usize = 16;
/// Claimed by the master, not yet forked.
const CLAIMED: u64 = u64::MAX;

// Thread block words.
const B_SEQ: usize = 0;
/// Wall-clock start of the running request, µs since the epoch; 0: idle.
const B_STARTED_US: usize = 1;
/// The front's index + 1 (0: none, 8 bits), then the text fields'
/// lengths (9 bits each), then one bit per field: cut to its room.
const B_META: usize = 2;
const B_TEXT: usize = 3;
/// Text fields and their room in bytes (multiples of 8, at most 511):
/// method, path, query, remote address, request id (a trusted one may be
/// 128 bytes: serve's record.rs ID_LIMIT).
const FIELDS: [usize; 5] = [16, 256, 128, 64, 128];
const TEXT_WORDS: usize = (16 + 256 + 128 + 64 + 128) / 8;
/// Where the cut bits begin in `B_META`.
const META_CUT: usize = 8 + 9 * FIELDS.len();
/// What ends a value the board cut to its room. The board does not know
/// how long the value was (the access log's own marker, for a value over
/// 1 KiB, says `...[cut, bytes: N]`).
pub const CUT_MARKER: &[u8] = b"...[cut]";
/// The start (as `B_STARTED_US`) of the request that was answered while
/// its thread still ran it (a `--timeout` 504): its access-log line is the
/// worker's, the master must not write a `killed` one. Written by the
/// worker's watchdog, not the thread: one atomic word, no seqlock.
const B_ANSWERED: usize = B_TEXT + TEXT_WORDS;
const B_TOTALS: usize = B_ANSWERED + 1;
const BLOCK_WORDS: usize = round_up(B_TOTALS + TOTALS_WORDS);

/// A worker slot's words: its head, one block per Python thread, and one
/// more for the counters of requests that end on no Python thread (the
/// I/O loop's), which its writers add to atomically.
const fn slot_words(threads: usize) -> usize {
    WORKER_HEAD_WORDS + (threads + 1) * BLOCK_WORDS
}

/// Whole 128-byte pairs of cache lines: a block shares none with another.
const fn round_up(words: usize) -> usize {
    words.div_ceil(16) * 16
}

/// The scoreboard, as the master made it.
pub struct Board {
    shm: shm::Shared,
    words: &'static [AtomicU64],
    workers: usize,
    threads: usize,
}

/// The worker slots for `processes` workers: room for each to be replaced
/// by a reload while it drains, for SIGTTIN growth, and for the workers of
/// a reload storm that still finish their requests.
pub fn slots_for(processes: usize) -> usize {
    (processes.saturating_mul(4)).max(processes + 16).min(4096)
}

impl Board {
    /// A zeroed board for `workers` slots of `threads` threads.
    pub fn create(workers: usize, threads: usize) -> io::Result<Board> {
        let threads = threads.max(1);
        let size = HEADER_WORDS + workers * slot_words(threads);
        let shm = shm::Shared::create(size)?;
        let words = shm.words();
        words[H_MAGIC].store(MAGIC, Ordering::Relaxed);
        words[H_LAYOUT].store(LAYOUT, Ordering::Relaxed);
        words[H_WORKERS].store(workers as u64, Ordering::Relaxed);
        words[H_THREADS].store(threads as u64, Ordering::Relaxed);
        Ok(Board {
            shm,
            words,
            workers,
            threads,
        })
    }

    /// Whether `fd` can be a board handed over by a previous image (a
    /// memfd sealed at a fixed size), asked before anyone takes ownership
    /// of the descriptor: a number read from the environment may name a
    /// descriptor that is someone else's.
    pub fn check_handed(fd: BorrowedFd<'_>) -> io::Result<()> {
        shm::check(fd).map(drop)
    }

    /// The board a previous image of this master handed over (its
    /// descriptor), checked to be one of this layout.
    pub fn open(fd: OwnedFd) -> io::Result<Board> {
        let shm = shm::Shared::open(fd)?;
        let words = shm.words();
        let bad = || io::Error::other("not a scoreboard of this rustgi version");
        if words.len() < HEADER_WORDS
            || words[H_MAGIC].load(Ordering::Relaxed) != MAGIC
            || words[H_LAYOUT].load(Ordering::Relaxed) != LAYOUT
        {
            return Err(bad());
        }
        let workers = words[H_WORKERS].load(Ordering::Relaxed) as usize;
        let threads = words[H_THREADS].load(Ordering::Relaxed) as usize;
        if threads == 0 || words.len() != HEADER_WORDS + workers * slot_words(threads) {
            return Err(bad());
        }
        Ok(Board {
            shm,
            words,
            workers,
            threads,
        })
    }

    /// The descriptor to hand across execve.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.shm.fd()
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn slot(&self, slot: usize) -> &'static [AtomicU64] {
        let stride = slot_words(self.threads);
        let start = HEADER_WORDS + slot * stride;
        &self.words[start..start + stride]
    }

    fn block(&self, slot: usize, thread: usize) -> &'static [AtomicU64] {
        let start = WORKER_HEAD_WORDS + thread * BLOCK_WORDS;
        &self.slot(slot)[start..start + BLOCK_WORDS]
    }

    /// Master, before a fork: a free slot, zeroed, marked taken. None when
    /// every slot is taken (the worker then runs without one: its
    /// requests are not counted).
    /// The worker's number (its label in the metrics) is the slot's, from
    /// 1: a replacement takes the number of the worker it replaces when it
    /// reuses its slot, so dashboards keep a handful of series.
    pub fn claim(&self, generation: u64) -> Option<usize> {
        let slot = (0..self.workers).find(|&s| self.slot(s)[W_PID].load(Ordering::Acquire) == 0)?;
        let words = self.slot(slot);
        for word in words {
            word.store(0, Ordering::Relaxed);
        }
        words[W_GENERATION].store(generation, Ordering::Relaxed);
        words[W_INDEX].store(slot as u64 + 1, Ordering::Relaxed);
        words[W_PID].store(CLAIMED, Ordering::Release);
        Some(slot)
    }

    /// Master, after the fork: whose slot it is, since when.
    pub fn started(&self, slot: usize, pid: u32, started_unix_ms: u64) {
        let words = self.slot(slot);
        words[W_STARTED_MS].store(started_unix_ms, Ordering::Relaxed);
        words[W_PID].store(u64::from(pid), Ordering::Release);
    }

    /// The slot of worker `pid`, if it has one.
    pub fn find(&self, pid: u32) -> Option<usize> {
        (0..self.workers).find(|&s| self.slot(s)[W_PID].load(Ordering::Acquire) == u64::from(pid))
    }

    /// Pids of the workers that hold a slot.
    pub fn pids(&self) -> Vec<u32> {
        (0..self.workers)
            .filter_map(|s| {
                let pid = self.slot(s)[W_PID].load(Ordering::Acquire);
                (pid != 0 && pid != CLAIMED).then_some(pid as u32)
            })
            .collect()
    }

    /// Master, once the slot's worker has been reaped (or its fork failed):
    /// its counters join the totals of ended workers, and what its threads
    /// were running when it ended is returned (for the access log's
    /// `killed` lines). The slot is free again.
    pub fn release(&self, slot: usize) -> Released {
        let retired = match self.slot(slot)[W_RETIRED].load(Ordering::Relaxed) {
            1 => Some(Retired::MaxRequests),
            2 => Some(Retired::Rss),
            3 => Some(Retired::Timeout),
            4 => Some(Retired::Lifetime),
            _ => None,
        };
        let in_flight = (0..self.threads)
            .filter(|&t| !self.answered(slot, t))
            .filter_map(|t| self.running(slot, t))
            .collect();
        let mut totals = Totals::default();
        for block in 0..=self.threads {
            add_words(&mut totals, &self.block(slot, block)[B_TOTALS..]);
        }
        let header = &self.words[H_TOTALS..H_TOTALS + TOTALS_WORDS];
        let mut folded = read_totals(header);
        folded.add(&totals);
        write_totals(header, &folded);
        self.slot(slot)[W_PID].store(0, Ordering::Release);
        Released { in_flight, retired }
    }

    /// Master: the worker in `slot` is being replaced for a reason the
    /// master decided (its lifetime), counted when it is reaped, as a
    /// retirement the worker decides is.
    pub fn retired(&self, slot: usize, why: Retired) {
        self.slot(slot)[W_RETIRED].store(why as u64, Ordering::Relaxed);
    }

    /// Adds one to a master counter.
    pub fn count(&self, counter: Counter) {
        let word = &self.words[counter.word()];
        word.store(word.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        self.words[counter.word()].load(Ordering::Relaxed)
    }

    /// Every request finished so far, by live and ended workers.
    pub fn totals(&self) -> Totals {
        let mut totals = read_totals(&self.words[H_TOTALS..H_TOTALS + TOTALS_WORDS]);
        for slot in 0..self.workers {
            let pid = self.slot(slot)[W_PID].load(Ordering::Acquire);
            if pid == 0 {
                continue;
            }
            for block in 0..=self.threads {
                add_words(&mut totals, &self.block(slot, block)[B_TOTALS..]);
            }
        }
        totals
    }

    /// A worker's slot as it reads now.
    pub fn worker(&self, slot: usize) -> WorkerView {
        let words = self.slot(slot);
        let mut totals = Totals::default();
        for block in 0..=self.threads {
            add_words(&mut totals, &self.block(slot, block)[B_TOTALS..]);
        }
        WorkerView {
            pid: words[W_PID].load(Ordering::Acquire) as u32,
            started_unix_ms: words[W_STARTED_MS].load(Ordering::Relaxed),
            generation: words[W_GENERATION].load(Ordering::Relaxed),
            index: words[W_INDEX].load(Ordering::Relaxed),
            threads: (0..self.threads).map(|t| self.running(slot, t)).collect(),
            totals,
        }
    }

    /// What a thread runs, if anything. Retries while the worker writes;
    /// a seqlock that stays odd (its worker died, or is stopped, in the
    /// middle of a write) gives what is there, marked torn.
    pub fn running(&self, slot: usize, thread: usize) -> Option<Running> {
        let block = self.block(slot, thread);
        for attempt in 0..64 {
            let before = block[B_SEQ].load(Ordering::Acquire);
            let odd = before % 2 == 1;
            if odd && attempt < 63 {
                std::hint::spin_loop();
                continue;
            }
            let started = block[B_STARTED_US].load(Ordering::Relaxed);
            let meta = block[B_META].load(Ordering::Relaxed);
            let text: Vec<u64> = block[B_TEXT..B_TEXT + TEXT_WORDS]
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect();
            fence(Ordering::Acquire);
            let after = block[B_SEQ].load(Ordering::Relaxed);
            if before != after && attempt < 63 {
                continue;
            }
            if started == 0 {
                return None;
            }
            return Some(Running::decode(
                started,
                meta,
                &text,
                odd || before != after,
            ));
        }
        None
    }

    /// Whether the request thread `thread` runs was already answered (see
    /// `B_ANSWERED`).
    fn answered(&self, slot: usize, thread: usize) -> bool {
        let block = self.block(slot, thread);
        let started = block[B_STARTED_US].load(Ordering::Relaxed);
        started != 0 && block[B_ANSWERED].load(Ordering::Relaxed) == started
    }

    /// The Python version the workers run, once one has said.
    pub fn python(&self) -> String {
        let bytes: Vec<u8> = self.words[H_PYTHON..H_PYTHON + PYTHON_WORDS]
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What [`Board::release`] leaves of a worker.
#[derive(Debug)]
pub struct Released {
    /// Requests its threads were running when it ended.
    pub in_flight: Vec<Running>,
    /// Why it retired on its own, if it did.
    pub retired: Option<Retired>,
}

/// A worker's slot, read.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub pid: u32,
    pub started_unix_ms: u64,
    pub generation: u64,
    /// The master's number for it (1, 2, …), as its process title shows.
    pub index: u64,
    /// Per Python thread: what it runs (None: idle).
    pub threads: Vec<Option<Running>>,
    pub totals: Totals,
}

/// A request a thread runs, as the board holds it: a text value longer
/// than its room is cut there and ends with [`CUT_MARKER`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub started_unix_us: u64,
    pub front: Option<Front>,
    pub method: Vec<u8>,
    pub path: Vec<u8>,
    pub query: Vec<u8>,
    pub remote: Vec<u8>,
    pub request_id: Vec<u8>,
    /// Read while its worker was writing it (it died or was stopped then):
    /// the text may mix two requests.
    pub torn: bool,
}

impl Running {
    fn decode(started: u64, meta: u64, text: &[u64], torn: bool) -> Running {
        let bytes: Vec<u8> = text.iter().flat_map(|w| w.to_le_bytes()).collect();
        let front = match meta & 0xff {
            0 => None,
            n => Front::ALL.get(n as usize - 1).copied(),
        };
        let mut fields = Vec::with_capacity(FIELDS.len());
        let mut offset = 0;
        for (i, room) in FIELDS.iter().enumerate() {
            let len = (((meta >> (8 + 9 * i)) & 0x1ff) as usize).min(*room);
            let mut field = bytes[offset..offset + len].to_vec();
            if meta >> (META_CUT + i) & 1 == 1 {
                field.extend_from_slice(CUT_MARKER);
            }
            fields.push(field);
            offset += room;
        }
        let mut fields = fields.into_iter();
        let mut next = || fields.next().unwrap_or_default();
        Running {
            started_unix_us: started,
            front,
            method: next(),
            path: next(),
            query: next(),
            remote: next(),
            request_id: next(),
            torn,
        }
    }
}

/// What a Python thread starts running (borrowed from the request).
#[derive(Clone, Copy, Debug, Default)]
pub struct Begin<'a> {
    pub started_unix_us: u64,
    pub front: Option<Front>,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub query: &'a [u8],
    pub remote: &'a [u8],
    pub request_id: &'a [u8],
}

/// How a request ended, for the counters.
#[derive(Clone, Copy, Debug)]
pub struct Finished {
    pub front: Front,
    pub status: u16,
    pub ended: Ended,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// A worker's slot, as the worker writes it.
#[derive(Clone, Copy)]
pub struct Writer {
    slot: &'static [AtomicU64],
    threads: usize,
}

static ATTACHED: OnceLock<Writer> = OnceLock::new();

impl Board {
    /// The writing side of `slot` (a worker's, after the fork).
    pub fn writer(&self, slot: usize) -> Writer {
        Writer {
            slot: self.slot(slot),
            threads: self.threads,
        }
    }

    /// In a worker: the Python version its interpreter runs, for the build
    /// info (the master may never start Python).
    pub fn set_python(&self, version: &str) {
        let mut bytes = [0u8; PYTHON_WORDS * 8];
        let len = version.len().min(bytes.len());
        bytes[..len].copy_from_slice(&version.as_bytes()[..len]);
        for (word, chunk) in self.words[H_PYTHON..H_PYTHON + PYTHON_WORDS]
            .iter()
            .zip(bytes.chunks_exact(8))
        {
            word.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Ordering::Relaxed,
            );
        }
    }
}

/// In a worker, before its Python threads start: the slot the master
/// claimed for it. Without it the hooks below do nothing (CGI mode, a
/// worker that found no free slot).
pub fn attach(writer: Writer) {
    let _ = ATTACHED.set(writer);
}

/// Whether this process writes a slot (a worker the master gave one).
pub fn attached() -> bool {
    ATTACHED.get().is_some()
}

/// In a worker that retires on its own: why, for the master's respawn
/// counters (before the worker tells the master).
pub fn retiring(why: Retired) {
    if let Some(me) = ATTACHED.get() {
        me.retiring(why);
    }
}

thread_local! {
    /// The block this OS thread writes alone: its Python thread's (set by
    /// [`thread_begin`]); `usize::MAX` on any other thread.
    static OWN_BLOCK: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Python thread `thread` begins (or resumes) running a request.
pub fn thread_begin(thread: usize, begin: &Begin<'_>) {
    OWN_BLOCK.with(|own| own.set(thread));
    if let Some(me) = ATTACHED.get() {
        me.thread_begin(thread, begin);
    }
}

/// Python thread `thread` no longer runs its request (it ended, or its
/// response parked, waiting for the client).
pub fn thread_end(thread: usize) {
    if let Some(me) = ATTACHED.get() {
        me.thread_end(thread);
    }
}

/// The request Python thread `thread` runs was answered without it (a
/// `--timeout` 504 or cut): if the worker dies before the thread comes
/// back, the request has had its access-log line already.
pub fn answered(thread: usize) {
    if let Some(me) = ATTACHED.get()
        && let Some(block) = me.block(thread)
    {
        let started = block[B_STARTED_US].load(Ordering::Relaxed);
        block[B_ANSWERED].store(started, Ordering::Relaxed);
    }
}

/// A request finished, on whichever thread its end came: its counters.
pub fn finished(done: &Finished) {
    if let Some(me) = ATTACHED.get() {
        let own = OWN_BLOCK.with(|own| own.get());
        me.finished((own != usize::MAX).then_some(own), done);
    }
}

impl Writer {
    fn block(&self, thread: usize) -> Option<&'static [AtomicU64]> {
        if thread >= self.threads {
            return None;
        }
        let start = WORKER_HEAD_WORDS + thread * BLOCK_WORDS;
        Some(&self.slot[start..start + BLOCK_WORDS])
    }

    pub fn retiring(&self, why: Retired) {
        self.slot[W_RETIRED].store(why as u64, Ordering::Relaxed);
    }

    pub fn thread_begin(&self, thread: usize, begin: &Begin<'_>) {
        let Some(block) = self.block(thread) else {
            return;
        };
        let seq = block[B_SEQ].load(Ordering::Relaxed);
        block[B_SEQ].store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mut meta = begin.front.map_or(0, |f| f.index() as u64 + 1);
        let fields = [
            begin.method,
            begin.path,
            begin.query,
            begin.remote,
            begin.request_id,
        ];
        let mut start = B_TEXT;
        for (i, (value, room)) in fields.iter().zip(FIELDS).enumerate() {
            let len = value.len().min(room);
            meta |= (len as u64) << (8 + 9 * i);
            if len < value.len() {
                meta |= 1 << (META_CUT + i);
            }
            for (k, chunk) in value[..len].chunks(8).enumerate() {
                let mut bytes = [0u8; 8];
                bytes[..chunk.len()].copy_from_slice(chunk);
                block[start + k].store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            }
            start += room / 8;
        }
        block[B_META].store(meta, Ordering::Relaxed);
        block[B_STARTED_US].store(begin.started_unix_us.max(1), Ordering::Relaxed);
        block[B_SEQ].store((seq | 1) + 1, Ordering::Release);
    }

    pub fn thread_end(&self, thread: usize) {
        let Some(block) = self.block(thread) else {
            return;
        };
        let seq = block[B_SEQ].load(Ordering::Relaxed);
        block[B_SEQ].store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        block[B_STARTED_US].store(0, Ordering::Relaxed);
        block[B_SEQ].store((seq | 1) + 1, Ordering::Release);
    }

    /// Counts a finished request: in `thread`'s block when the caller is
    /// that Python thread (its only writer: plain stores), otherwise in
    /// the slot's shared block, with atomic additions.
    pub fn finished(&self, thread: Option<usize>, done: &Finished) {
        let (block, add): (_, fn(&AtomicU64, u64)) = match thread {
            Some(thread) => match self.block(thread) {
                Some(block) => (block, bump),
                None => return,
            },
            None => {
                let start = WORKER_HEAD_WORDS + self.threads * BLOCK_WORDS;
                (&self.slot[start..start + BLOCK_WORDS], add_shared)
            }
        };
        let totals = &block[B_TOTALS..B_TOTALS + TOTALS_WORDS];
        let cell = (done.front.index() * STATUS_CLASSES + status_class(done.status))
            * Ended::ALL.len()
            + done.ended.index();
        add(&totals[T_REQUESTS + cell], 1);
        add(
            &totals[T_BUCKETS + duration_bucket(done.duration.as_secs_f64())],
            1,
        );
        add(&totals[T_SUM_US], done.duration.as_micros() as u64);
        add(&totals[T_REQUEST_BYTES], done.request_bytes);
        add(&totals[T_RESPONSE_BYTES], done.response_bytes);
    }
}

/// Adds to a word that several threads add to (a slot's shared block): an
/// atomic read-modify-write, so that no addition is lost.
fn add_shared(word: &AtomicU64, by: u64) {
    word.fetch_add(by, Ordering::Relaxed);
}

/// Adds to a word only this thread writes (its own block): a load and a
/// store, no locked instruction; readers still see whole values.
fn bump(word: &AtomicU64, by: u64) {
    word.store(
        word.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

fn add_words(totals: &mut Totals, words: &[AtomicU64]) {
    totals.add(&read_totals(&words[..TOTALS_WORDS]));
}

fn read_totals(words: &[AtomicU64]) -> Totals {
    let get = |i: usize| words[i].load(Ordering::Relaxed);
    let mut totals = Totals::default();
    for (i, cell) in totals.requests.iter_mut().flatten().flatten().enumerate() {
        *cell = get(T_REQUESTS + i);
    }
    for (i, bucket) in totals.duration_buckets.iter_mut().enumerate() {
        *bucket = get(T_BUCKETS + i);
    }
    totals.duration_sum_us = get(T_SUM_US);
    totals.request_bytes = get(T_REQUEST_BYTES);
    totals.response_bytes = get(T_RESPONSE_BYTES);
    totals
}

fn write_totals(words: &[AtomicU64], totals: &Totals) {
    let set = |i: usize, v: u64| words[i].store(v, Ordering::Relaxed);
    for (i, cell) in totals.requests.iter().flatten().flatten().enumerate() {
        set(T_REQUESTS + i, *cell);
    }
    for (i, bucket) in totals.duration_buckets.iter().enumerate() {
        set(T_BUCKETS + i, *bucket);
    }
    set(T_SUM_US, totals.duration_sum_us);
    set(T_REQUEST_BYTES, totals.request_bytes);
    set(T_RESPONSE_BYTES, totals.response_bytes);
}

#[cfg(test)]
mod tests;
