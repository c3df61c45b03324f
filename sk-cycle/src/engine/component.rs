//! Component threads: one long-lived OS thread per named component; every
//! part bound to it runs there, sent as a message (no thread per part).

use std::thread::{self, JoinHandle};

use crossbeam::channel::{self, Sender};
use parking_lot::Mutex;

/// A job for a component thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Component {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Component {
    pub(crate) fn start(cycle: &str, name: &str) -> std::io::Result<Component> {
        let (tx, rx) = channel::unbounded::<Job>();
        let thread = thread::Builder::new()
            .name(format!("sk-component:{cycle}:{name}"))
            .spawn(move || {
                for job in rx {
                    job();
                }
            })?;
        Ok(Component {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends `job`; gives it back if the thread is gone.
    pub(crate) fn send(&self, job: Job) -> Result<(), Job> {
        match self.tx.lock().as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Closes the queue and joins the thread once its jobs are done.
    pub(crate) fn shutdown(&self) {
        self.tx.lock().take();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            // Jobs catch their own panics; the loop ends when the queue closes.
            let _ = thread.join();
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.shutdown();
    }
}
