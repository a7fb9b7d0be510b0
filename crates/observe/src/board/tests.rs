use super::*;

fn begin<'a>(path: &'a [u8]) -> Begin<'a> {
    Begin {
        started_unix_us: 1_700_000_000_000_000,
        front: Some(Front::Uwsgi),
        method: b"POST",
        path,
        query: b"a=1",
        remote: b"10.0.0.1",
        request_id: b"abc",
    }
}

fn done(status: u16, ended: Ended) -> Finished {
    Finished {
        front: Front::Scgi,
        status,
        ended,
        duration: Duration::from_millis(3),
        request_bytes: 10,
        response_bytes: 100,
    }
}

#[test]
fn a_running_request_reads_back_and_goes_on_end() {
    let board = Board::create(2, 3).unwrap();
    let slot = board.claim(1).unwrap();
    board.started(slot, 4242, 5);
    let writer = board.writer(slot);
    writer.thread_begin(2, &begin(b"/slow"));
    let view = board.worker(slot);
    assert_eq!(view.pid, 4242);
    assert_eq!(view.threads.len(), 3);
    assert!(view.threads[0].is_none());
    let running = view.threads[2].clone().unwrap();
    assert_eq!(running.method, b"POST");
    assert_eq!(running.path, b"/slow");
    assert_eq!(running.query, b"a=1");
    assert_eq!(running.remote, b"10.0.0.1");
    assert_eq!(running.request_id, b"abc");
    assert_eq!(running.front, Some(Front::Uwsgi));
    assert!(!running.torn);
    writer.thread_end(2);
    assert!(board.running(slot, 2).is_none());
}

#[test]
fn long_text_is_cut_to_its_room_and_does_not_spill() {
    let board = Board::create(1, 1).unwrap();
    let slot = board.claim(1).unwrap();
    let writer = board.writer(slot);
    let long = vec![b'x'; 1000];
    writer.thread_begin(0, &begin(&long));
    let running = board.running(slot, 0).unwrap();
    let mut cut = vec![b'x'; 256];
    cut.extend_from_slice(CUT_MARKER);
    assert_eq!(running.path, cut, "cut to its room, and marked");
    assert_eq!(running.query, b"a=1", "an uncut one has no marker");
    // A shorter one after it leaves nothing of the longer one.
    writer.thread_begin(0, &begin(b"/a"));
    assert_eq!(board.running(slot, 0).unwrap().path, b"/a");
}

#[test]
fn a_write_cut_in_the_middle_reads_as_torn_without_hanging() {
    let board = Board::create(1, 1).unwrap();
    let slot = board.claim(1).unwrap();
    let writer = board.writer(slot);
    writer.thread_begin(0, &begin(b"/x"));
    // What a worker that died inside thread_begin leaves: an odd sequence.
    let block = board.block(slot, 0);
    block[B_SEQ].store(block[B_SEQ].load(Ordering::Relaxed) | 1, Ordering::Relaxed);
    let running = board.running(slot, 0).unwrap();
    assert!(running.torn);
    assert_eq!(running.path, b"/x");
}

#[test]
fn totals_survive_the_release_of_a_slot_and_the_slot_is_reused_clean() {
    let board = Board::create(2, 2).unwrap();
    let slot = board.claim(1).unwrap();
    board.started(slot, 100, 0);
    let writer = board.writer(slot);
    writer.finished(Some(0), &done(200, Ended::Complete));
    writer.finished(None, &done(503, Ended::Timeout));
    writer.thread_begin(1, &begin(b"/in-flight"));
    writer.retiring(Retired::Rss);
    let before = board.totals();
    assert_eq!(before.count(), 2);
    assert_eq!(before.response_bytes, 200);
    assert_eq!(
        before.requests[Front::Scgi.index()][4][Ended::Timeout.index()],
        1
    );
    let released = board.release(slot);
    assert_eq!(released.retired, Some(Retired::Rss));
    assert_eq!(released.in_flight.len(), 1);
    assert_eq!(released.in_flight[0].path, b"/in-flight");
    assert_eq!(board.totals(), before, "totals never go down");
    assert!(board.find(100).is_none());
    // The freed slot comes back zeroed.
    let again = board.claim(2).unwrap();
    assert_eq!(again, slot);
    board.started(again, 101, 0);
    let view = board.worker(again);
    assert_eq!(view.totals.count(), 0);
    assert!(view.threads.iter().all(Option::is_none));
    assert_eq!(board.totals(), before);
}

#[test]
fn a_retirement_the_master_decides_is_read_back_at_release() {
    let board = Board::create(1, 1).unwrap();
    let slot = board.claim(1).unwrap();
    board.started(slot, 100, 0);
    board.retired(slot, Retired::Lifetime);
    assert_eq!(board.release(slot).retired, Some(Retired::Lifetime));
    // The slot's next worker starts with no cause.
    let again = board.claim(1).unwrap();
    board.started(again, 101, 0);
    assert_eq!(board.release(again).retired, None);
}

#[test]
fn slots_run_out_and_come_back() {
    let board = Board::create(2, 1).unwrap();
    let a = board.claim(1).unwrap();
    let b = board.claim(1).unwrap();
    assert_ne!(a, b);
    assert!(board.claim(1).is_none());
    board.release(a);
    assert_eq!(board.claim(1), Some(a));
}

#[test]
fn a_board_handed_across_exec_opens_with_its_contents() {
    let board = Board::create(3, 2).unwrap();
    let slot = board.claim(1).unwrap();
    board.started(slot, 7, 0);
    board
        .writer(slot)
        .finished(Some(0), &done(200, Ended::Complete));
    board.count(Counter::Reloads);
    board.set_python("3.11.7");
    let fd = board.fd().try_clone_to_owned().unwrap();
    let again = Board::open(fd).unwrap();
    assert_eq!(again.totals().count(), 1);
    assert_eq!(again.counter(Counter::Reloads), 1);
    assert_eq!(again.find(7), Some(slot));
    assert_eq!(again.python(), "3.11.7");
    assert_eq!(again.pids(), vec![7]);
}

#[test]
fn a_file_that_is_no_board_is_refused() {
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let fd: OwnedFd = file.into();
    assert!(Board::open(fd).is_err());
}

#[test]
fn readers_never_see_a_mix_of_two_requests() {
    let board = Board::create(1, 1).unwrap();
    let slot = board.claim(1).unwrap();
    let writer = board.writer(slot);
    let paths: [&[u8]; 2] = [&[b'a'; 200], &[b'b'; 200]];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..20_000 {
                writer.thread_begin(0, &begin(paths[i % 2]));
            }
        });
        for _ in 0..20_000 {
            if let Some(running) = board.running(slot, 0)
                && !running.torn
            {
                let first = running.path[0];
                assert!(running.path.iter().all(|&b| b == first));
            }
        }
    });
}

#[test]
fn a_request_id_of_128_bytes_is_kept_whole_and_a_longer_one_marked() {
    let board = Board::create(1, 1).unwrap();
    let slot = board.claim(1).unwrap();
    let writer = board.writer(slot);
    let id = vec![b'i'; 128];
    writer.thread_begin(
        0,
        &Begin {
            request_id: &id,
            ..begin(b"/")
        },
    );
    assert_eq!(board.running(slot, 0).unwrap().request_id, id);
    let longer = vec![b'i'; 129];
    writer.thread_begin(
        0,
        &Begin {
            request_id: &longer,
            ..begin(b"/")
        },
    );
    let running = board.running(slot, 0).unwrap();
    assert_eq!(running.request_id, [&id[..], CUT_MARKER].concat());
    assert_eq!(running.path, b"/");
}
