//! Length-prefixed frames: a 4-byte little-endian length, then that many
//! bytes of sk-cereal internal format.
//!
//! A reader refuses a declared length above its limit before allocating
//! anything, so a length prefix of 4 GiB costs nothing, and grows its
//! buffer as the payload arrives, so a header claiming 64 MiB before a few
//! bytes costs a few bytes; a channel that ends inside a frame is a typed
//! error, not a hang or a panic.

use std::cell::Cell;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};
use serde::Serialize;

use sk_cereal::Internal;

use super::spin::Spin;
use crate::error::ProtocolError;

/// The default largest frame: 64 MiB.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// The least a frame's buffer grows by at once.
const GROW_STEP: usize = 64 << 10;

/// Reads frames from a byte stream.
///
/// Reading resumes where it stopped: on a non-blocking stream a
/// [`WouldBlock`](io::ErrorKind::WouldBlock) error keeps the part of the
/// frame already read, and the next call goes on from there.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    inner: R,
    max: usize,
    header: [u8; 4],
    /// Header bytes read so far.
    have: usize,
    /// The payload read so far (it grows towards `expected`).
    buf: Vec<u8>,
    /// The declared length of the payload being read.
    expected: usize,
    /// Payload bytes read so far; `None` while reading the header.
    filled: Option<usize>,
}

impl<R: Read> FrameReader<R> {
    /// A reader refusing frames above `max` bytes.
    pub(crate) fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max,
            header: [0; 4],
            have: 0,
            buf: Vec::new(),
            expected: 0,
            filled: None,
        }
    }

    /// The underlying stream.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream, mutably (reading from it directly would
    /// break the framing).
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether no frame is partly read.
    #[cfg(test)]
    pub(crate) fn is_between_frames(&self) -> bool {
        self.have == 0 && self.filled.is_none()
    }

    /// The next frame's payload; `Ok(None)` when the stream ends cleanly
    /// between frames.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TooLarge`] for a declared length above the limit,
    /// [`ProtocolError::Truncated`] when the stream ends inside a frame,
    /// [`ProtocolError::Io`] when reading fails (a `WouldBlock` error can
    /// be resumed by calling again).
    pub(crate) fn read_frame(&mut self) -> Result<Option<&[u8]>, ProtocolError> {
        if self.filled.is_none() {
            while self.have < self.header.len() {
                match self.inner.read(&mut self.header[self.have..]) {
                    Ok(0) if self.have == 0 => return Ok(None),
                    Ok(0) => {
                        return Err(ProtocolError::Truncated {
                            expected: self.header.len(),
                            got: self.have,
                        });
                    }
                    Ok(n) => self.have += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let len = u32::from_le_bytes(self.header);
            if len as usize > self.max {
                return Err(ProtocolError::TooLarge {
                    len: u64::from(len),
                    max: self.max,
                });
            }
            self.buf.clear();
            self.expected = len as usize;
            self.filled = Some(0);
        }
        // The buffer grows as bytes arrive (at most doubling what has come),
        // so a header that lies about its length costs nothing up front.
        // `buf` holds the bytes read (`filled`) and zeroed room after
        // them; it is zero-filled once per growth, never again.
        let expected = self.expected;
        let mut filled = self.filled.unwrap_or(0);
        while filled < expected {
            if filled == self.buf.len() {
                let step = (expected - filled).min(filled.max(GROW_STEP));
                self.buf.resize(filled + step, 0);
            }
            match self.inner.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    return Err(ProtocolError::Truncated {
                        expected,
                        got: filled,
                    });
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.filled = Some(filled);
                    return Err(e.into());
                }
            }
        }
        self.have = 0;
        self.filled = None;
        Ok(Some(&self.buf))
    }

    /// Where a partly read frame stands, header included: `(bytes it
    /// needs, bytes read)`, with 4 needed while inside the header; `None`
    /// between frames.
    pub(crate) fn partial(&self) -> Option<(usize, usize)> {
        let header = self.header.len();
        match self.filled {
            Some(filled) => Some((header + self.expected, header + filled)),
            None if self.have > 0 => Some((header, self.have)),
            None => None,
        }
    }

    /// The next frame decoded as a `T`.
    ///
    /// # Errors
    ///
    /// As [`FrameReader::read_frame`], and [`ProtocolError::Malformed`]
    /// when the payload is not a `T`.
    #[cfg(test)]
    pub(crate) fn read<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ProtocolError> {
        match self.read_frame()? {
            Some(bytes) => Internal::decode(bytes)
                .map(Some)
                .map_err(ProtocolError::Malformed),
            None => Ok(None),
        }
    }
}

/// Encodes `message` as one frame (header and payload in one buffer, so a
/// single write puts it on the channel whole).
///
/// # Errors
///
/// [`ProtocolError::Malformed`] when the message does not serialize, or
/// [`ProtocolError::TooLarge`] when it exceeds `max`.
pub(crate) fn encode_frame<T: Serialize>(
    message: &T,
    max: usize,
) -> Result<Vec<u8>, ProtocolError> {
    let mut frame = Vec::new();
    encode_frame_into(message, max, &mut frame)?;
    Ok(frame)
}

/// [`encode_frame`] into `frame` (cleared first), reusing its capacity.
fn encode_frame_into<T: Serialize + ?Sized>(
    message: &T,
    max: usize,
    frame: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    frame.clear();
    // Room for a small message at once, not a few reallocations.
    frame.reserve(SMALL_FRAME);
    frame.extend_from_slice(&[0; 4]);
    Internal::encode_into(message, frame).map_err(ProtocolError::Malformed)?;
    let len = frame.len() - 4;
    if len > max || u32::try_from(len).is_err() {
        return Err(ProtocolError::TooLarge {
            len: len as u64,
            max,
        });
    }
    frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// What a frame buffer is made with room for.
const SMALL_FRAME: usize = 256;

/// The largest frame buffer a thread keeps for its next frame.
const KEPT_FRAME_BUFFER: usize = 64 << 10;

/// Encodes `message` as one frame, as [`encode_frame`] does, in a buffer
/// this thread keeps from one frame to the next, and hands it to `send`.
///
/// # Errors
///
/// As [`encode_frame`].
pub(crate) fn with_frame<T: Serialize + ?Sized, R>(
    message: &T,
    max: usize,
    send: impl FnOnce(&[u8]) -> R,
) -> Result<R, ProtocolError> {
    thread_local! {
        static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }
    // Taken out while in use: a frame encoded meanwhile on this thread
    // (from `send`, say) gets a buffer of its own. A thread whose
    // thread-locals are being destroyed (a worker dropped by one of them
    // sends its stop) has none: a fresh buffer then, and none kept.
    let mut frame = BUFFER.try_with(Cell::take).unwrap_or_default();
    let sent = encode_frame_into(message, max, &mut frame).map(|()| send(&frame));
    if frame.capacity() <= KEPT_FRAME_BUFFER {
        let _ = BUFFER.try_with(|kept| kept.set(frame));
    }
    sent
}

/// Whether `fd` became ready for `events` within `timeout` (`None`: no
/// limit). An interrupted wait counts as not ready.
pub(crate) fn poll_fd(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    const MAX_MS: u64 = i32::MAX as u64;
    let mut entry = [PollFd::from_borrowed_fd(fd, events)];
    // Whole milliseconds, rounded up (and at most `i32::MAX` of them), so
    // a wait never ends before its deadline and a caller waiting for one
    // does not spin on slivers of a millisecond.
    let timeout = timeout.map(|t| {
        let ms = u64::try_from(t.as_micros().div_ceil(1000)).map_or(MAX_MS, |ms| ms.min(MAX_MS));
        // Never fails: the seconds of `MAX_MS` fit any `tv_sec`.
        Timespec::try_from(Duration::from_millis(ms)).unwrap_or_default()
    });
    match rustix::event::poll(&mut entry, timeout.as_ref()) {
        Ok(ready) => Ok(ready > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How long a write may wait for a peer that does not read.
const WRITE_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Writes one encoded frame to a socket without ever blocking in the
/// write itself: when the socket is full it waits for room, at most
/// [`WRITE_STALL_LIMIT`] at a time. A stall before the first byte is a
/// `WouldBlock` error and leaves the channel as it was; a stall inside the
/// frame shuts the socket down (the peer would read the rest of the stream
/// out of step) and is a `TimedOut` error.
pub(crate) fn send_frame(stream: &UnixStream, frame: &[u8]) -> Result<(), ProtocolError> {
    send_frame_or(stream, frame, &mut || {})
}

/// [`send_frame`], calling `full` before each wait for room (the peer
/// must then read what has gone out so far).
pub(crate) fn send_frame_or(
    stream: &UnixStream,
    frame: &[u8],
    full: &mut dyn FnMut(),
) -> Result<(), ProtocolError> {
    let mut rest = frame;
    while !rest.is_empty() {
        match rustix::net::send(stream, rest, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(sent) => rest = &rest[sent..],
            Err(Errno::INTR) => {}
            Err(Errno::WOULDBLOCK) => {
                full();
                if !poll_fd(stream.as_fd(), PollFlags::OUT, Some(WRITE_STALL_LIMIT))? {
                    let midway = rest.len() < frame.len();
                    if midway {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
                    let kind = if midway {
                        io::ErrorKind::TimedOut
                    } else {
                        io::ErrorKind::WouldBlock
                    };
                    return Err(io::Error::new(
                        kind,
                        format!("the peer read nothing for {WRITE_STALL_LIMIT:?}"),
                    )
                    .into());
                }
            }
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
    Ok(())
}

/// A socket's receiving side that blocks or not, per read.
#[derive(Debug)]
pub(crate) struct Recv {
    /// Shared with whoever waits for the socket or registers it (see
    /// `relay.rs`).
    stream: Arc<UnixStream>,
    /// Whether the next read may wait for data. Only one read waits:
    /// after it, the rest of a frame is read without blocking, so a frame
    /// that never completes cannot hold its reader (see `relay.rs`). It
    /// tries the socket for [`spin_budget`](super::spin::spin_budget) before it sleeps, as its
    /// [`Spin`] says.
    pub(crate) wait: bool,
    /// Whether it tries: shared with the relay's reads with a deadline.
    pub(crate) spin: Spin,
    /// Whether the socket carries only what this side reads (the peer
    /// reads what this side sends on another): a read that may wait
    /// waits in `recv` itself.
    pub(crate) one_way: bool,
}

impl Recv {
    /// A reader of `stream`.
    pub(crate) fn new(stream: Arc<UnixStream>) -> Self {
        Recv {
            stream,
            wait: false,
            spin: Spin::new(),
            one_way: false,
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (got, _) = rustix::net::recv(&*self.stream, buf, RecvFlags::DONTWAIT)?;
        Ok(got)
    }

    /// A read that waits for input in the kernel.
    fn sleep_and_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.one_way {
            // Nothing this side sends goes through this socket, so the
            // peer taking it in wakes nobody here (see below): one
            // system call, whether the input has come or not.
            let (got, _) = rustix::net::recv(&*self.stream, buf, RecvFlags::empty())?;
            return Ok(got);
        }
        // Wait in `poll` for input, not in a blocking `recv`: a stream
        // socket wakes a thread blocked in `recv` whenever the peer takes
        // in what this end sent (there is room to write again), so a
        // reader that sent a request and waits for the reply would be
        // woken for nothing as soon as the peer reads the request (on one
        // CPU: two needless context switches a round trip). `poll` waits
        // for input only.
        // (An interrupted wait is waited again.)
        while !poll_fd(self.stream.as_fd(), PollFlags::IN, None)? {}
        self.recv(buf)
    }

    /// Tries the socket until input comes (or the channel ends, or
    /// fails) or `budget` passes, yielding the CPU between tries (one
    /// try for a zero `budget`); `None` when nothing came.
    fn try_for(&self, buf: &mut [u8], budget: Duration) -> Option<io::Result<usize>> {
        let started = Instant::now();
        loop {
            match self.recv(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                got => return Some(got),
            }
            if started.elapsed() >= budget {
                return None;
            }
            thread::yield_now();
        }
    }
}

impl Read for Recv {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !std::mem::take(&mut self.wait) {
            return self.recv(buf);
        }
        // What is waited for has often come already (a reply, on one
        // CPU, comes while its caller is off the CPU between its send and
        // its read), or comes within microseconds.
        let started = Instant::now();
        let got = match self.try_for(buf, self.spin.budget(Duration::MAX)) {
            Some(got) => got,
            None => self.sleep_and_read(buf),
        };
        self.spin.ended(started, true);
        got
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::spin::spin_budget;
    use super::*;

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut wire = Vec::new();
        for msg in ["one", "two", ""] {
            wire.extend(encode_frame(&msg.to_owned(), DEFAULT_MAX_FRAME).unwrap());
        }
        let mut r = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME);
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some("one"));
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some("two"));
        assert_eq!(r.read::<String>().unwrap().as_deref(), Some(""));
        assert!(r.read::<String>().unwrap().is_none());
    }

    #[test]
    fn a_4_gib_length_prefix_is_refused_without_allocating() {
        let wire = u32::MAX.to_le_bytes();
        let mut r = FrameReader::new(&wire[..], DEFAULT_MAX_FRAME);
        let err = r.read_frame().unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { len, .. } if len == u64::from(u32::MAX)),
            "{err:?}"
        );
        assert!(r.buf.capacity() == 0, "nothing was allocated");
        assert_eq!(
            err.to_string(),
            "frame of 4294967295 bytes exceeds the limit of 67108864 bytes"
        );
    }

    #[test]
    fn a_declared_length_allocates_only_what_arrives() {
        // A header declaring 64 MiB, then ten bytes, then nothing yet.
        let mut wire = (DEFAULT_MAX_FRAME as u32).to_le_bytes().to_vec();
        wire.extend([7u8; 10]);
        let pieces = vec![wire[..4].to_vec(), wire[4..].to_vec()];
        let mut r = FrameReader::new(
            Trickle {
                pieces,
                blocked: true,
                then_block: true,
            },
            DEFAULT_MAX_FRAME,
        );
        for _ in 0..4 {
            match r.read_frame() {
                Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r.partial(), Some((DEFAULT_MAX_FRAME + 4, 14)));
        assert!(
            r.buf.capacity() <= 1 << 20,
            "{} bytes held for 10 that arrived",
            r.buf.capacity()
        );
    }

    #[test]
    fn a_large_frame_arriving_in_pieces_is_read_whole() {
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let wire = encode_frame(&payload, DEFAULT_MAX_FRAME).unwrap();
        let pieces = wire.chunks(100_000).map(<[u8]>::to_vec).collect();
        let mut r = FrameReader::new(
            Trickle {
                pieces,
                blocked: false,
                then_block: false,
            },
            DEFAULT_MAX_FRAME,
        );
        let got = loop {
            match r.read::<Vec<u8>>() {
                Ok(Some(got)) => break got,
                Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(got, payload);
        assert!(r.is_between_frames());
    }

    #[test]
    fn a_truncated_frame_is_a_typed_error() {
        let frame = encode_frame(&"hello".to_owned(), DEFAULT_MAX_FRAME).unwrap();
        for cut in 1..frame.len() {
            let mut r = FrameReader::new(&frame[..cut], DEFAULT_MAX_FRAME);
            let err = r.read_frame().unwrap_err();
            assert!(
                matches!(err, ProtocolError::Truncated { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_malformed() {
        let frame = encode_frame(&"text".to_owned(), DEFAULT_MAX_FRAME).unwrap();
        let mut r = FrameReader::new(&frame[..], DEFAULT_MAX_FRAME);
        let err = r.read::<(u64, u64, u64)>().unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn encoding_above_the_limit_is_refused() {
        let err = encode_frame(&vec![0u8; 100], 10).unwrap_err();
        assert!(
            matches!(err, ProtocolError::TooLarge { max: 10, .. }),
            "{err:?}"
        );
    }

    /// Hands out its bytes in pieces, with a `WouldBlock` between them,
    /// as a non-blocking socket does while a frame is still arriving.
    struct Trickle {
        pieces: Vec<Vec<u8>>,
        blocked: bool,
        /// Once the pieces are out: would-block (the peer is silent), not
        /// end of stream.
        then_block: bool,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.blocked {
                self.blocked = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.blocked = false;
            let Some(piece) = self.pieces.first_mut() else {
                if self.then_block {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                return Ok(0);
            };
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.pieces.remove(0);
            }
            Ok(n)
        }
    }

    #[test]
    fn a_frame_arriving_in_pieces_is_read_whole_across_would_block() {
        let mut wire = encode_frame(&"first".to_owned(), DEFAULT_MAX_FRAME).unwrap();
        wire.extend(encode_frame(&"second".to_owned(), DEFAULT_MAX_FRAME).unwrap());
        // Cut inside the header and inside each payload.
        let pieces = vec![
            wire[..2].to_vec(),
            wire[2..7].to_vec(),
            wire[7..12].to_vec(),
            wire[12..].to_vec(),
        ];
        let mut r = FrameReader::new(
            Trickle {
                pieces,
                blocked: false,
                then_block: false,
            },
            DEFAULT_MAX_FRAME,
        );
        let mut got = Vec::new();
        let mut would_block = 0;
        loop {
            match r.read::<String>() {
                Ok(Some(s)) => got.push(s),
                Ok(None) => break,
                Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    would_block += 1;
                    assert!(would_block < 100, "no progress");
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, ["first", "second"]);
        assert!(would_block >= 4, "the reader was interrupted mid-frame");
        assert!(r.is_between_frames());
    }

    /// A read that may wait, on one end of a socketpair; the other end.
    fn waiting_reader(one_way: bool) -> (Recv, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut recv = Recv::new(Arc::new(ours));
        recv.wait = true;
        recv.one_way = one_way;
        (recv, theirs)
    }

    #[test]
    fn a_read_that_may_wait_gets_input_that_comes_after_its_spin() {
        sk_testkit::guarded(|| {
            for one_way in [false, true] {
                let (mut recv, mut peer) = waiting_reader(one_way);
                let writer = thread::spawn(move || {
                    // Long after the reader has gone to sleep.
                    thread::sleep(spin_budget() * 20 + Duration::from_millis(10));
                    std::io::Write::write_all(&mut peer, b"late").unwrap();
                    peer
                });
                let mut buf = [0u8; 8];
                let got = recv.read(&mut buf).unwrap();
                assert_eq!(&buf[..got], b"late", "one way: {one_way}");
                drop(writer.join().unwrap());
            }
        });
    }

    #[test]
    fn a_read_that_may_wait_sees_the_channel_end() {
        sk_testkit::guarded(|| {
            for one_way in [false, true] {
                let (mut recv, peer) = waiting_reader(one_way);
                drop(peer);
                assert_eq!(recv.read(&mut [0u8; 8]).unwrap(), 0, "one way: {one_way}");
            }
        });
    }

    #[test]
    fn a_reader_stops_trying_after_a_slow_answer_and_starts_after_a_quick_one() {
        sk_testkit::guarded(|| {
            let (mut recv, mut peer) = waiting_reader(true);
            assert!(recv.spin.on, "a reader starts out trying");
            let writer = thread::spawn(move || {
                thread::sleep(spin_budget() * 20 + Duration::from_millis(10));
                std::io::Write::write_all(&mut peer, b"slow").unwrap();
                peer
            });
            let mut buf = [0u8; 8];
            assert_eq!(recv.read(&mut buf).unwrap(), 4);
            let mut peer = writer.join().unwrap();
            assert!(!recv.spin.on, "a slow answer stops it");
            assert_eq!(recv.spin.budget(Duration::MAX), Duration::ZERO);
            // An answer that is there at once: it tries again next time.
            std::io::Write::write_all(&mut peer, b"fast").unwrap();
            recv.wait = true;
            assert_eq!(recv.read(&mut buf).unwrap(), 4);
            // (`SK_WORKER_SPIN_US=0`: no answer is quick enough.)
            if !spin_budget().is_zero() {
                assert!(recv.spin.on, "a quick answer starts it again");
            }
            // A wait with a deadline that runs out stops it too.
            let mut spin = Spin::new();
            spin.ended(Instant::now(), false);
            assert!(!spin.on);
        });
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = FrameReader::new(&bytes[..], 1 << 10);
            // Read until the stream ends or an error; every outcome is typed.
            for _ in 0..64 {
                match r.read::<Vec<String>>() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
