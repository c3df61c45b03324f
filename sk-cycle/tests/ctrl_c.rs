//! Ctrl-C handling is scoped to the run that asked for it: real SIGINTs
//! sent to the `ctrl_c` example (a program of its own: a signal to this
//! test process would end it).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use sk_testkit::hang_guard;

/// The example binary (cargo builds examples for `cargo test`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("ctrl_c")
}

/// Starts the example in `mode`; its stdout lines arrive on the channel.
///
/// With SIGINT and SIGTERM at their default actions (`env` resets them,
/// then execs the example under the same pid): a program started in the
/// background of a non-interactive shell inherits them ignored, and a
/// run restores what it found, so "Ctrl-C ends the program again" would
/// not hold there.
fn start(mode: &str) -> (Child, Receiver<String>) {
    sk_testkit::spawn_lines(
        Command::new("env")
            .arg("--default-signal=INT,TERM")
            .arg(example())
            .arg(mode),
    )
    .expect("the example is built by cargo test")
}

/// Waits for the line `want`; the lines before it.
fn wait_line(rx: &Receiver<String>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no {want:?} ({e}); saw {seen:?}"));
        if line == want {
            return seen;
        }
        seen.push(line);
    }
}

fn interrupt(child: &Child) {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn finish(mut child: Child) -> ExitStatus {
    child.wait().unwrap()
}

/// The child's exit status, if it exits within 100 ms.
fn wait_a_little(child: &mut Child) -> Option<ExitStatus> {
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn after_a_run_ctrl_c_ends_the_program_again() {
    hang_guard(Duration::from_secs(60), || {
        let (child, rx) = start("after-run");
        let before = wait_line(&rx, "ready");
        assert!(
            before.contains(&"ran 3 iterations".to_owned()),
            "{before:?}"
        );
        interrupt(&child);
        let status = finish(child);
        assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    });
}

#[test]
fn a_handler_the_program_installs_after_a_run_gets_ctrl_c() {
    hang_guard(Duration::from_secs(60), || {
        let (child, rx) = start("app-handler-after");
        wait_line(&rx, "ready");
        interrupt(&child);
        let status = finish(child);
        let rest: Vec<String> = rx.iter().collect();
        assert!(rest.contains(&"app handler".to_owned()), "{rest:?}");
        assert_eq!(status.code(), Some(0), "{status:?} {rest:?}");
    });
}

#[test]
fn a_run_and_the_programs_own_handler_both_hear_ctrl_c() {
    hang_guard(Duration::from_secs(60), || {
        let (child, rx) = start("app-handler-before");
        wait_line(&rx, "ready");
        interrupt(&child);
        // The run stops gracefully, and the program's handler heard it.
        let before = wait_line(&rx, "ready");
        assert!(before.contains(&"app heard 1".to_owned()), "{before:?}");
        assert!(
            before.contains(&"stopped: Stopped".to_owned()),
            "{before:?}"
        );
        // The run is over: the program's handler alone gets the next one.
        interrupt(&child);
        let status = finish(child);
        let rest: Vec<String> = rx.iter().collect();
        assert!(rest.contains(&"app heard 2".to_owned()), "{rest:?}");
        assert_eq!(status.code(), Some(0), "{status:?} {rest:?}");
    });
}

#[test]
fn a_second_ctrl_c_during_a_graceful_stop_ends_the_program_at_once() {
    hang_guard(Duration::from_secs(60), || {
        let (mut child, rx) = start("second");
        wait_line(&rx, "ready");
        // The part ignores its stop token: the graceful stop waits...
        interrupt(&child);
        // ...until a second Ctrl-C, which ends it without waiting for the
        // part's 30 s. (Two signals sent close together may arrive as
        // one, so Ctrl-C is pressed until the program is gone.)
        let mut status = None;
        for _ in 0..100 {
            interrupt(&child);
            status = wait_a_little(&mut child);
            if status.is_some() {
                break;
            }
        }
        let status = status.expect("the program ended");
        assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
        let rest: Vec<String> = rx.iter().collect();
        assert!(!rest.iter().any(|l| l.starts_with("stopped")), "{rest:?}");
    });
}
