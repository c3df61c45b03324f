use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::AtomicU32;

use crossbeam::channel::{self, Sender};
use sk_testkit::hang_guard;

use super::*;
use crate::wire::encode_frame;

/// Routes each id to the mailbox registered for it.
#[derive(Default)]
struct Mailboxes {
    boxes: Mutex<HashMap<u64, Sender<u64>>>,
    closed: AtomicU32,
}

impl Router<u64> for Mailboxes {
    fn route(&self, id: u64) {
        if let Some(tx) = self.boxes.lock().remove(&id) {
            let _ = tx.send(id);
        }
    }

    fn closed(&self, _broken: Option<&ProtocolError>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn frame(id: u64) -> Vec<u8> {
    encode_frame(&id, DEFAULT_MAX_FRAME).unwrap()
}

#[test]
fn every_waiter_gets_its_own_frame_whoever_reads_it() {
    hang_guard(Duration::from_secs(60), || {
        for round in 0..50u64 {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            let relay = Arc::new(Relay::<u64>::new(ours, None));
            let router = Arc::new(Mailboxes::default());
            let waiters: Vec<_> = (0..6u64)
                .map(|id| {
                    let (tx, rx) = channel::bounded(1);
                    router.boxes.lock().insert(id, tx);
                    let (relay, router) = (Arc::clone(&relay), Arc::clone(&router));
                    thread::spawn(move || {
                        let deadline = Instant::now() + Duration::from_secs(20);
                        match relay.wait(&*router, Some(deadline), || rx.try_recv().ok()) {
                            Waited::Got(got) => got,
                            other => panic!("round {round}, waiter {id}: {other:?}"),
                        }
                    })
                })
                .collect();
            // Answers in the reverse order, in one burst: most waiters
            // get theirs from another thread's read.
            let mut burst = Vec::new();
            for id in (0..6u64).rev() {
                burst.extend(frame(id));
            }
            theirs.write_all(&burst).unwrap();
            for (id, waiter) in waiters.into_iter().enumerate() {
                assert_eq!(waiter.join().unwrap(), id as u64);
            }
        }
    });
}

#[test]
fn frames_a_reader_buffered_past_its_own_are_routed_before_it_leaves() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let relay = Relay::<u64>::new(ours, None);
        let router = Mailboxes::default();
        let (tx0, rx0) = channel::bounded(1);
        let (tx1, rx1) = channel::bounded(1);
        router.boxes.lock().extend([(0, tx0), (1, tx1)]);
        let mut burst = frame(0);
        burst.extend(frame(1));
        theirs.write_all(&burst).unwrap();
        let waited = relay.wait(&router, None, || rx0.try_recv().ok());
        assert!(matches!(waited, Waited::Got(0)), "{waited:?}");
        // Read in the same recv as the reader's own frame: nothing on
        // the socket would announce it to anyone else.
        assert_eq!(rx1.try_recv().ok(), Some(1));
    });
}

/// A hub whose peer rings a doorbell: it counts how often it is
/// asked to arm and disarm the socket.
#[derive(Clone, Default)]
struct RungHub {
    arms: Arc<AtomicU32>,
    disarms: Arc<AtomicU32>,
}

impl HubArm for RungHub {
    fn arm(&self, _socket: BorrowedFd<'_>) {
        self.arms.fetch_add(1, Ordering::SeqCst);
    }

    fn disarm(&self, _socket: BorrowedFd<'_>) {
        self.disarms.fetch_add(1, Ordering::SeqCst);
    }

    fn must_watch(&self) -> bool {
        false
    }
}

#[test]
fn with_a_doorbell_a_thread_reads_without_touching_the_hub() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let hub = RungHub::default();
        let relay = Relay::<u64>::new(ours, Some(Box::new(hub.clone())));
        let router = Mailboxes::default();
        for id in 0..3u64 {
            let (tx, rx) = channel::bounded(1);
            router.boxes.lock().insert(id, tx);
            theirs.write_all(&frame(id)).unwrap();
            let waited = relay.wait(&router, None, || rx.try_recv().ok());
            assert!(
                matches!(waited, Waited::Got(got) if got == id),
                "{waited:?}"
            );
            assert_eq!(relay.state.lock().reader, Reader::Hub);
        }
        // Registered armed: disarmed once, for the first reader; never
        // armed again, as nothing came outside a ring.
        assert_eq!(hub.disarms.load(Ordering::SeqCst), 1);
        assert_eq!(hub.arms.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_ring_is_read_by_the_hub_or_has_the_socket_watched_after_the_reader() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let hub = RungHub::default();
    let relay = Relay::<u64>::new(ours, Some(Box::new(hub.clone())));
    let router = Mailboxes::default();
    let (tx, rx) = channel::bounded(2);
    router.boxes.lock().insert(7, tx.clone());
    // No thread reads: the hub reads at the ring.
    theirs.write_all(&frame(7)).unwrap();
    relay.rung(&router);
    assert_eq!(rx.try_recv().ok(), Some(7));
    assert_eq!(hub.arms.load(Ordering::SeqCst), 0);
    // A thread reads when the ring comes: once it leaves, the hub
    // watches the socket (the frame may have come after its last read).
    assert!(relay.try_lead());
    relay.rung(&router);
    router.boxes.lock().insert(8, tx);
    theirs.write_all(&frame(8)).unwrap();
    assert!(rx.try_recv().is_err(), "the hub left it to the reader");
    relay.wait_leading(&router, Some(Instant::now()), || None::<()>);
    assert_eq!(hub.arms.load(Ordering::SeqCst), 1);
    // Once is enough: the next reader leaves it alone again.
    assert!(relay.try_lead());
    relay.wait_leading(&router, Some(Instant::now()), || None::<()>);
    assert_eq!(hub.arms.load(Ordering::SeqCst), 1);
}

#[test]
fn with_a_doorbell_a_frame_partly_read_keeps_the_socket_watched() {
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let hub = RungHub::default();
    let relay = Relay::<u64>::new(ours, Some(Box::new(hub.clone())));
    let router = Mailboxes::default();
    let (tx, rx) = channel::bounded(1);
    router.boxes.lock().insert(9, tx);
    let whole = frame(9);
    theirs.write_all(&whole[..3]).unwrap();
    relay.rung(&router);
    // The rest comes without a ring (it is one frame's send).
    assert_eq!(hub.arms.load(Ordering::SeqCst), 1);
    theirs.write_all(&whole[3..]).unwrap();
    relay.drain(&router, true);
    assert_eq!(rx.try_recv().ok(), Some(9));
    assert_eq!(hub.arms.load(Ordering::SeqCst), 1);
}

#[test]
fn after_the_hub_read_on_its_one_shot_event_a_watch_arms_the_socket_again() {
    // A submitted call's end is read by the hub, the kernel having
    // disarmed the socket as the event fired; the next submitted call
    // must have it armed again, or nothing reads what its code sends.
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let hub = RungHub::default();
    let relay = Relay::<u64>::new(ours, Some(Box::new(hub.clone())));
    let router = Mailboxes::default();
    let (tx, rx) = channel::bounded(1);
    router.boxes.lock().insert(1, tx);
    theirs.write_all(&frame(1)).unwrap();
    relay.drain(&router, true);
    assert_eq!(rx.try_recv().ok(), Some(1));
    relay.watch();
    assert_eq!(
        hub.arms.load(Ordering::SeqCst),
        1,
        "the socket was left unarmed"
    );
}

/// A hub that counts how often it is asked to watch the socket.
struct CountingHub(Arc<AtomicU32>);

impl HubArm for CountingHub {
    fn arm(&self, _socket: BorrowedFd<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn disarm(&self, _socket: BorrowedFd<'_>) {}
}

#[test]
fn the_hub_has_the_channel_whenever_no_thread_reads_it() {
    hang_guard(Duration::from_secs(60), || {
        for round in 0..50 {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            let arms = Arc::new(AtomicU32::new(0));
            let relay = Arc::new(Relay::<u64>::new(
                ours,
                Some(Box::new(CountingHub(Arc::clone(&arms)))),
            ));
            let router = Arc::new(Mailboxes::default());
            let waiters: Vec<_> = (0..2u64)
                .map(|id| {
                    let (tx, rx) = channel::bounded(1);
                    router.boxes.lock().insert(id, tx);
                    let (relay, router) = (Arc::clone(&relay), Arc::clone(&router));
                    thread::spawn(move || relay.wait(&*router, None, || rx.try_recv().ok()))
                })
                .collect();
            let mut burst = frame(1);
            burst.extend(frame(0));
            theirs.write_all(&burst).unwrap();
            for waiter in waiters {
                assert!(matches!(waiter.join().unwrap(), Waited::Got(_)));
            }
            assert_eq!(
                relay.state.lock().reader,
                Reader::Hub,
                "round {round}: every thread left; the hub must read on"
            );
            assert!(arms.load(Ordering::SeqCst) >= 1, "round {round}");
        }
    });
}

#[test]
fn a_waiter_gives_up_at_its_deadline() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let relay = Relay::<u64>::new(ours, None);
        let router = Mailboxes::default();
        let start = Instant::now();
        let waited = relay.wait(&router, Some(start + Duration::from_millis(50)), || {
            None::<u64>
        });
        assert!(matches!(waited, Waited::TimedOut), "{waited:?}");
        assert!(start.elapsed() >= Duration::from_millis(50));
    });
}

#[test]
fn the_end_of_the_channel_reaches_every_waiter_once() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let relay = Arc::new(Relay::<u64>::new(ours, None));
        let router = Arc::new(Mailboxes::default());
        let (started_tx, started_rx) = channel::unbounded();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (relay, router) = (Arc::clone(&relay), Arc::clone(&router));
                let started = started_tx.clone();
                thread::spawn(move || {
                    let _ = started.send(());
                    relay.wait(&*router, None, || None::<u64>)
                })
            })
            .collect();
        for _ in 0..4 {
            started_rx.recv().unwrap();
        }
        drop(theirs);
        for waiter in waiters {
            assert!(matches!(waiter.join().unwrap(), Waited::Closed));
        }
        assert_eq!(router.closed.load(Ordering::SeqCst), 1);
        assert!(matches!(relay.ended(), Some(Ended::Eof)));
    });
}

#[test]
fn a_frame_that_stops_midway_ends_the_channel_as_stalled() {
    hang_guard(Duration::from_secs(30), || {
        // A header promising 100 bytes, three of them, then silence
        // with the socket open: a reader with no deadline, and one
        // that only drains what has come, both give up.
        for drain_only in [false, true] {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            let relay = Relay::<u64>::new(ours, None).stall_after(Duration::from_millis(200));
            let router = Mailboxes::default();
            let mut lie = 100u32.to_le_bytes().to_vec();
            lie.extend([1, 2, 3]);
            theirs.write_all(&lie).unwrap();
            if drain_only {
                let start = Instant::now();
                while relay.ended().is_none() {
                    assert!(start.elapsed() < Duration::from_secs(10), "never ended");
                    relay.drain(&router, false);
                    thread::sleep(Duration::from_millis(20));
                }
            } else {
                let waited = relay.wait(&router, None, || None::<u64>);
                assert!(matches!(waited, Waited::Closed), "{waited:?}");
            }
            match relay.ended() {
                Some(Ended::Broken(why)) => {
                    assert!(why.contains("stalled at 7 of its 104 bytes"), "{why}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(router.closed.load(Ordering::SeqCst), 1);
        }
    });
}

#[test]
fn bytes_that_wait_for_a_reader_are_not_a_stall() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let relay = Relay::<u64>::new(ours, None).stall_after(Duration::from_millis(100));
        let router = Mailboxes::default();
        let (tx, rx) = channel::bounded(1);
        router.boxes.lock().insert(5, tx);
        let whole = frame(5);
        // Half a frame is drained; the rest comes at once, but no
        // reader looks for longer than the stall limit (a long call).
        theirs.write_all(&whole[..3]).unwrap();
        relay.drain(&router, false);
        theirs.write_all(&whole[3..]).unwrap();
        thread::sleep(Duration::from_millis(300));
        let waited = relay.wait(
            &router,
            Some(Instant::now() + Duration::from_secs(5)),
            || rx.try_recv().ok(),
        );
        assert!(matches!(waited, Waited::Got(5)), "{waited:?}");
        assert!(relay.ended().is_none(), "{:?}", relay.ended());
    });
}

#[test]
fn a_frame_arriving_slowly_within_the_limit_is_read() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let relay = Relay::<u64>::new(ours, None).stall_after(Duration::from_secs(5));
        let router = Mailboxes::default();
        let (tx, rx) = channel::bounded(1);
        router.boxes.lock().insert(9, tx);
        let whole = frame(9);
        let writer = thread::spawn(move || {
            for byte in whole {
                theirs.write_all(&[byte]).unwrap();
                thread::sleep(Duration::from_millis(5));
            }
            theirs
        });
        let waited = relay.wait(&router, None, || rx.try_recv().ok());
        assert!(matches!(waited, Waited::Got(9)), "{waited:?}");
        drop(writer.join().unwrap());
    });
}

#[test]
fn a_peer_gone_with_our_bytes_unread_is_a_reset() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut writer = ours.try_clone().unwrap();
        let relay = Relay::<u64>::new(ours, None);
        let router = Mailboxes::default();
        writer.write_all(&frame(1)).unwrap();
        drop(theirs);
        let waited = relay.wait(&router, None, || None::<u64>);
        assert!(matches!(waited, Waited::Closed), "{waited:?}");
        assert!(
            matches!(relay.ended(), Some(Ended::Reset)),
            "{:?}",
            relay.ended()
        );
    });
}

#[test]
fn a_one_way_reader_waits_in_recv_for_frames_and_for_the_end() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let relay = Arc::new(Relay::<u64>::new(ours, None).one_way());
        assert!(relay.frames.lock().frames.get_ref().get_ref().one_way);
        let router = Arc::new(Mailboxes::default());
        let (tx, rx) = channel::bounded(1);
        router.boxes.lock().insert(3, tx);
        let reader = {
            let (relay, router) = (Arc::clone(&relay), Arc::clone(&router));
            thread::spawn(move || {
                let got = relay.wait(&*router, None, || rx.try_recv().ok());
                let end = relay.wait(&*router, None, || None::<u64>);
                (got, end)
            })
        };
        // The frame in two pieces, then the end.
        let whole = frame(3);
        theirs.write_all(&whole[..2]).unwrap();
        thread::sleep(Duration::from_millis(20));
        theirs.write_all(&whole[2..]).unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(theirs);
        let (got, end) = reader.join().unwrap();
        assert!(matches!(got, Waited::Got(3)), "{got:?}");
        assert!(matches!(end, Waited::Closed), "{end:?}");
        assert!(matches!(relay.ended(), Some(Ended::Eof)));
    });
}

#[test]
fn bad_data_ends_the_channel_as_broken() {
    hang_guard(Duration::from_secs(30), || {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let relay = Relay::<u64>::new(ours, None);
        let router = Mailboxes::default();
        theirs.write_all(&u32::MAX.to_le_bytes()).unwrap();
        let waited = relay.wait(&router, None, || None::<u64>);
        assert!(matches!(waited, Waited::Closed), "{waited:?}");
        match relay.ended() {
            Some(Ended::Broken(why)) => assert!(why.contains("exceeds the limit"), "{why}"),
            other => panic!("{other:?}"),
        }
    });
}
