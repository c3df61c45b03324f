//! The main job, `sk-pipeline`, as a user runs it: a bounded run, and a
//! continuous run stopped by a real SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sk-pipeline");

#[test]
fn a_bounded_run_prints_progress_and_stats_and_exits_zero() {
    sk_testkit::guarded(|| {
        let out = Command::new(BIN)
            .args([
                "--iterations",
                "30",
                "--interval-ms",
                "0",
                "--progress-every",
                "10",
            ])
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("iteration     30:"), "{stdout}");
        assert!(
            stdout.contains("stopped (Completed) after 30 iterations"),
            "{stdout}"
        );
        assert!(stdout.contains("published 30 summaries"), "{stdout}");
        for part in [
            "sources",
            "normalize",
            "energy",
            "anomalies",
            "enrich",
            "aggregate",
            "publish",
            "report",
        ] {
            assert!(
                stdout.contains(&format!("  {part}")),
                "stats for {part}: {stdout}"
            );
        }
    })
}

#[test]
fn sigint_stops_a_continuous_run_cleanly() {
    sk_testkit::guarded(|| {
        let mut child = Command::new(BIN)
            .args(["--interval-ms", "2", "--progress-every", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until it is really iterating.
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let iterating = line.starts_with("iteration");
                    seen.push(line);
                    if iterating {
                        break;
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("no progress from the pipeline ({e}): {seen:?}");
                }
            }
        }
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = child.wait().expect("the pipeline exits");
        let rest: Vec<String> = rx.iter().collect();
        let text = rest.join("\n");
        assert_eq!(
            status.code(),
            Some(0),
            "exit status {status:?}; output: {text}"
        );
        assert!(text.contains("stopped (Stopped) after"), "{text}");
        assert!(text.contains("0 in error state"), "{text}");
        assert!(text.contains("  sources"), "final stats printed: {text}");
    })
}
