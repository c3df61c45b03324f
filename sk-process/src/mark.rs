//! Which calls a worker process has started, kept where its parent can
//! read it after the worker dies.
//!
//! The parent makes a small memory file (a memfd) for each worker process
//! and hands it over as the channel's first byte (SCM_RIGHTS); the worker
//! writes the id of each call into it just before it runs the call. When
//! a worker dies with calls in hand, the parent reads the mark: a call
//! whose id is above it never started — whether its bytes were still in
//! the socket or already read by a process being killed — so it can run
//! on another worker without running twice. The worker maps the file and
//! pays one atomic store a call (a `pwrite` where it cannot map it);
//! nobody is woken.
//!
//! The same byte may carry more descriptors after the mark's (see
//! `worker/process.rs`): the worker's doorbell, and the socket its calls
//! come on.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{MemfdFlags, ftruncate, memfd_create};
use rustix::io::{pread, pwrite};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// Set in a worker's environment when its channel starts with a mark.
pub(crate) const ENV_MARK: &str = "SK_WORKER_MARK";

/// The byte that carries the mark's descriptor.
const HANDOVER: u8 = b'M';

/// The most descriptors that come with the mark.
pub(crate) const MAX_EXTRA: usize = 2;

/// The highest call id a worker process has started.
#[derive(Debug)]
pub(crate) struct StartedMark {
    file: OwnedFd,
    /// The last id this side wrote.
    written: AtomicU64,
    /// The file mapped into this process, where the worker writes.
    mapped: Option<&'static AtomicU64>,
}

impl StartedMark {
    /// A new mark, at 0 (no call started).
    pub(crate) fn new() -> io::Result<Self> {
        let file = memfd_create("sk-started", MemfdFlags::CLOEXEC)?;
        ftruncate(&file, 8)?;
        Ok(StartedMark::of(file))
    }

    /// Sends the mark to the worker at the other end of `channel`, as the
    /// channel's first byte, with the descriptors `extra` (at most
    /// [`MAX_EXTRA`]) after its own.
    pub(crate) fn hand_over(
        &self,
        channel: &UnixStream,
        extra: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let mut fds = [self.file.as_fd(); 1 + MAX_EXTRA];
        let Some(slots) = fds.get_mut(1..=extra.len()) else {
            return Err(io::Error::other("too many descriptors for the mark"));
        };
        slots.copy_from_slice(extra);
        let fds = &fds[..=extra.len()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1 + MAX_EXTRA))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(io::Error::other("no room for the descriptor"));
        }
        let sent = sendmsg(
            channel,
            &[IoSlice::new(&[HANDOVER])],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if sent == 1 {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }

    /// Takes the mark the parent handed over: the channel's first byte;
    /// with the descriptors that came after its own, in order.
    pub(crate) fn receive(channel: &UnixStream) -> io::Result<(Self, Vec<OwnedFd>)> {
        let mut byte = [0u8];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1 + MAX_EXTRA))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            channel,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        // Descriptors the kernel could not hand over (the worker at its
        // limit of open files, say) leave the rest misread: the worker
        // must not start on half its channel.
        if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the started-call mark came without all its descriptors",
            ));
        }
        let mut file = None;
        let mut extra = Vec::new();
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    if file.is_none() {
                        file = Some(fd);
                    } else {
                        extra.push(fd);
                    }
                }
            }
        }
        match (got.bytes, byte[0], file) {
            (1, HANDOVER, Some(file)) => {
                let mut mark = StartedMark::of(file);
                // Mapped for the rest of the process: a worker keeps its
                // one mark until it exits.
                mark.mapped = crate::sys::map_shared_u64(&mark.file);
                Ok((mark, extra))
            }
            (0, _, _) => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the channel did not start with the started-call mark",
            )),
        }
    }

    fn of(file: OwnedFd) -> Self {
        StartedMark {
            file,
            written: AtomicU64::new(0),
            mapped: None,
        }
    }

    /// Records that call `id` starts now (the mark only grows).
    pub(crate) fn mark(&self, id: u64) {
        if id > self.written.fetch_max(id, Ordering::Relaxed) {
            match self.mapped {
                // Stored before the call runs: the store is in the shared
                // page (the kernel's copy) as soon as it is made.
                Some(cell) => cell.store(id.to_le(), Ordering::Release),
                // A failed write leaves the mark low: the call then counts
                // as not started only if the worker also dies before
                // answering, and the parent cannot tell either way.
                None => {
                    let _ = pwrite(&self.file, &id.to_le_bytes(), 0);
                }
            }
        }
    }

    /// The highest call id started so far (0 for none).
    pub(crate) fn get(&self) -> u64 {
        let mut bytes = [0u8; 8];
        match pread(&self.file, &mut bytes, 0) {
            Ok(8) => u64::from_le_bytes(bytes),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_handed_over_is_shared_by_both_ends() {
        let (parent, worker) = UnixStream::pair().unwrap();
        let ours = StartedMark::new().unwrap();
        ours.hand_over(&parent, &[]).unwrap();
        // Frames after the hand-over stay in the stream for the relay.
        std::io::Write::write_all(&mut &parent, b"rest").unwrap();
        let (theirs, extra) = StartedMark::receive(&worker).unwrap();
        assert!(extra.is_empty());
        assert_eq!(ours.get(), 0);
        theirs.mark(7);
        theirs.mark(3);
        assert_eq!(ours.get(), 7, "seen by the parent, and it only grows");
        let mut rest = [0u8; 4];
        std::io::Read::read_exact(&mut &worker, &mut rest).unwrap();
        assert_eq!(&rest, b"rest");
    }

    #[test]
    fn descriptors_come_with_the_mark_in_order() {
        let (parent, worker) = UnixStream::pair().unwrap();
        let ours = StartedMark::new().unwrap();
        let (one_here, one_there) = UnixStream::pair().unwrap();
        let (two_here, two_there) = UnixStream::pair().unwrap();
        ours.hand_over(&parent, &[one_there.as_fd(), two_there.as_fd()])
            .unwrap();
        drop((one_there, two_there));
        let (theirs, extra) = StartedMark::receive(&worker).unwrap();
        theirs.mark(2);
        assert_eq!(ours.get(), 2);
        assert_eq!(extra.len(), 2);
        for (fd, (here, word)) in extra
            .into_iter()
            .zip([(one_here, b"one"), (two_here, b"two")])
        {
            std::io::Write::write_all(&mut &UnixStream::from(fd), word).unwrap();
            let mut heard = [0u8; 3];
            std::io::Read::read_exact(&mut &here, &mut heard).unwrap();
            assert_eq!(&heard, word);
        }
    }

    #[test]
    fn a_mark_whose_descriptors_did_not_all_come_is_refused() {
        // More descriptors than the worker makes room for (its space is
        // rounded up: 8 is more) stand for a hand-over the kernel cut
        // short: the worker must not start on part of its channel.
        let (parent, worker) = UnixStream::pair().unwrap();
        let ours = StartedMark::new().unwrap();
        let fds = [ours.file.as_fd(); 8];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        sendmsg(
            &parent,
            &[IoSlice::new(&[HANDOVER])],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let err = StartedMark::receive(&worker).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn a_channel_without_a_mark_is_refused() {
        let (parent, worker) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &parent, b"xyz").unwrap();
        let err = StartedMark::receive(&worker).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        drop(parent);
        let (parent, worker) = UnixStream::pair().unwrap();
        drop(parent);
        let err = StartedMark::receive(&worker).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
