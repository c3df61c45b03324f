//! What a program that forgets `sk_process::init()` gets: a clear error,
//! not a tree of processes.
//!
//! A worker process is this binary started again; without `init()` first
//! thing in `main`, the worker runs `main` instead of serving, and would
//! start workers of its own, and so on. The library refuses a worker
//! start from such a process and tells the parent, so both see
//! `WorkerError::MissingInit`.
//!
//! Run with `cargo run -p sk-process --example forgot_init`.

use sk_process::{Backend, Worker, is_worker};

fn main() {
    // Deliberately no `sk_process::init()` here.
    println!(
        "main started in pid {} (started as a worker: {})",
        std::process::id(),
        is_worker()
    );
    match Worker::spawn("forgetful", Backend::Process) {
        Ok(worker) => {
            println!("unexpected: worker {} started", worker.pid());
            std::process::exit(2);
        }
        Err(e) => {
            println!("refused: {e}");
            std::process::exit(if is_worker() { 0 } else { 1 });
        }
    }
}
