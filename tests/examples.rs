//! The examples, run as a user runs them.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// The built example binary `name` (cargo builds examples for `cargo test`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    dir.join("examples").join(name)
}

#[test]
fn the_workers_example_runs_work_in_other_processes() {
    sk_testkit::guarded(|| {
        let out = Command::new(example("workers"))
            .output()
            .expect("the example is built by cargo test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parent: u32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("parent pid "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("the example printed its pid");
        let worker: u32 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("worker \"solo\" answered from pid "))
            .and_then(|p| p.trim().parse().ok())
            .expect("the worker answered");
        assert_ne!(parent, worker, "the call ran in another process");
        assert!(stdout.contains("last = 28002"), "{stdout}");
        assert!(
            stdout.contains("digit sum of 1..=100000 = 2250001"),
            "{stdout}"
        );
    })
}

#[test]
fn the_functions_example_runs() {
    sk_testkit::guarded(|| {
        let out = Command::new(example("functions"))
            .output()
            .expect("the example is built by cargo test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("upload: uploaded after 3 attempts"),
            "{stdout}"
        );
        assert!(
            stdout.contains("global storage: thumbnails_made = 4"),
            "{stdout}"
        );
    })
}
