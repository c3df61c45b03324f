//! The main job, `sk-pipeline`, as a user runs it: a bounded run, and a
//! continuous run stopped by a real SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sk-pipeline");

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
        let dot = Command::new(BIN).arg("--dot").output().expect("it runs");
        assert!(dot.status.success());
        let dot = String::from_utf8_lossy(&dot.stdout);
        assert!(dot.starts_with("digraph \"sensors\""), "{dot}");
        // One rank per level, the level's columns in position order.
        assert!(
            dot.contains("{ rank=same; n3_1; n3_2; n3_3; n3_1 -> n3_2 -> n3_3 [style=invis]; }"),
            "{dot}"
        );
        assert!(dot.contains("subgraph cluster_legend"), "{dot}");

        let mermaid = Command::new(BIN)
            .arg("--mermaid")
            .output()
            .expect("it runs");
        assert!(mermaid.status.success());
        let mermaid = String::from_utf8_lossy(&mermaid.stdout);
        assert!(mermaid.contains("flowchart TD"), "{mermaid}");
        assert!(
            mermaid.contains("n5_2[\"score<br/>5-2<br/>process"),
            "{mermaid}"
        );
    })
}
