//! The main job, `sk-pipeline`, as a user runs it: a bounded run, a
//! continuous run stopped by a real SIGINT, and a run killed with SIGKILL
//! that the same command resumes from its journal. Each runs in its own
//! working directory (the journal's default home).

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sk-pipeline");

/// The pipeline, to be run in `dir`.
fn pipeline(dir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(BIN);
    command.current_dir(dir.path());
    command
}

/// Spawns `command` with its stdout lines sent to the returned channel.
fn spawn_lines(command: &mut Command) -> (std::process::Child, mpsc::Receiver<String>) {
    sk_testkit::spawn_lines(command.stderr(Stdio::piped())).expect("the binary starts")
}

/// Waits for a line starting with `prefix`, killing `child` and failing
/// if none comes in 30 s.
fn wait_for(
    child: &mut std::process::Child,
    rx: &mpsc::Receiver<String>,
    prefix: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let found = line.starts_with(prefix);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("no {prefix:?} from the pipeline ({e}): {seen:?}");
            }
        }
    }
}

/// The pids of live (not zombie) processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the ")" closing the name: state, then the parent pid.
            let mut fields = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
            state != "Z" && ppid == Some(parent)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[test]
fn a_bounded_run_prints_progress_and_stats_and_exits_zero() {
    sk_testkit::guarded(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = pipeline(&dir)
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
        let dir = tempfile::tempdir().unwrap();
        let (mut child, rx) =
            spawn_lines(pipeline(&dir).args(["--interval-ms", "2", "--progress-every", "1"]));
        // Wait until it is really iterating.
        wait_for(&mut child, &rx, "iteration");
        // The "score" part runs in a worker process of the pipeline's own.
        let workers = children_of(child.id());
        assert!(!workers.is_empty(), "the pipeline has worker processes");
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = child.wait().expect("the pipeline exits");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while workers.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let orphans: Vec<u32> = workers.iter().copied().filter(|&p| alive(p)).collect();
        assert!(
            orphans.is_empty(),
            "workers {orphans:?} outlived the pipeline"
        );
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

#[test]
fn the_pipeline_draws_itself_as_dot_and_mermaid() {
    sk_testkit::guarded(|| {
        let dir = tempfile::tempdir().unwrap();
        let dot = pipeline(&dir).arg("--dot").output().expect("it runs");
        assert!(dot.status.success());
        let dot = String::from_utf8_lossy(&dot.stdout);
        assert!(dot.starts_with("digraph \"sensors\""), "{dot}");
        // One rank per level, the level's columns in position order.
        assert!(
            dot.contains("{ rank=same; n3_1; n3_2; n3_3; n3_1 -> n3_2 -> n3_3 [style=invis]; }"),
            "{dot}"
        );
        assert!(dot.contains("subgraph cluster_legend"), "{dot}");

        let mermaid = pipeline(&dir).arg("--mermaid").output().expect("it runs");
        assert!(mermaid.status.success());
        let mermaid = String::from_utf8_lossy(&mermaid.stdout);
        assert!(mermaid.contains("flowchart TD"), "{mermaid}");
        assert!(
            mermaid.contains("n5_2[\"score<br/>5-2<br/>process"),
            "{mermaid}"
        );
    })
}

#[test]
fn killed_with_sigkill_the_same_command_resumes_the_run() {
    sk_testkit::guarded(|| {
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "--iterations",
            "300",
            "--interval-ms",
            "1",
            "--progress-every",
            "20",
        ];
        let (mut child, rx) = spawn_lines(pipeline(&dir).args(args));
        let seen = wait_for(&mut child, &rx, "iteration");
        let journal = dir.path().join("sk-pipeline.journal");
        assert!(
            seen.iter()
                .any(|l| l.starts_with("journal: ") && l.contains("sk-pipeline.journal")),
            "the journal is named at start: {seen:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(journal.exists());

        let out = pipeline(&dir).args(args).output().expect("it runs again");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let resumed = stdout
            .lines()
            .find(|l| l.starts_with("resumed run sensors at iteration "))
            .unwrap_or_else(|| panic!("no resume line: {stdout}"));
        let at: u64 = resumed
            .trim_start_matches("resumed run sensors at iteration ")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // It had shown iteration 20; the journal had committed some of them.
        assert!(
            (2..=21).contains(&at),
            "it resumed after what it had done: {resumed}"
        );
        assert!(stdout.contains("iteration    300:"), "{stdout}");
        // The store's totals went on from where they were: one summary
        // per iteration in all, across the kill.
        assert!(stdout.contains("published 300 summaries"), "{stdout}");
        let ran = format!("after {} iterations", 300 - (at - 1));
        assert!(stdout.contains(&ran), "{ran}: {stdout}");

        // Done: the same command again says so and runs nothing.
        let out = pipeline(&dir).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(
            stdout.contains("had done 300 iterations already (300 asked)"),
            "{stdout}"
        );

        // Without a journal nothing is kept.
        let other = tempfile::tempdir().unwrap();
        let out = pipeline(&other)
            .args(["--iterations", "3", "--no-journal"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(!other.path().join("sk-pipeline.journal").exists());
    })
}

#[test]
fn a_journal_that_is_not_one_is_a_clear_error() {
    sk_testkit::guarded(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a journal\n".repeat(100)).unwrap();
        let out = pipeline(&dir)
            .args(["--iterations", "3", "--journal", "notes.txt"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("notes.txt: not a Suitkaise journal"),
            "{stderr}"
        );
        assert!(stderr.contains("--no-journal"), "{stderr}");
    })
}
