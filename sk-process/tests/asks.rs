//! Questions from the code a worker runs to the caller waiting for it
//! (`ask_parent` / `Worker::call_answering`), on the backend
//! `SK_SPAWN_BACKEND` selects.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sk_core::{Args, SkFunction};
use sk_process::{Backend, Worker, WorkerError};
use sk_testkit::guarded;

sk_process::worker_test!();

fn backend() -> Backend {
    Backend::from_env()
}

/// Asks the parent for `count` numbers and sums them; a refusal comes
/// back as the error's text.
#[sk_core::function(crate = ::sk_core)]
fn sum_asked(count: u32) -> Result<u64, String> {
    let mut total = 0;
    for i in 0..count {
        let answer = sk_process::ask_parent(&i.to_le_bytes(), Duration::from_secs(20))
            .map_err(|e| sk_core::error_chain(&e))?;
        let bytes: [u8; 8] = answer.try_into().map_err(|_| "not 8 bytes".to_owned())?;
        total += u64::from_le_bytes(bytes);
    }
    Ok(total)
}

/// The parent's answer to `sum_asked`'s question `i`: `i * 10`.
fn tens(question: &[u8]) -> Result<Vec<u8>, String> {
    let i: [u8; 4] = question.try_into().map_err(|_| "bad question".to_owned())?;
    Ok((u64::from(u32::from_le_bytes(i)) * 10)
        .to_le_bytes()
        .to_vec())
}

#[test]
fn the_running_code_asks_the_waiting_caller_and_gets_each_answer() {
    guarded(|| {
        let worker = Worker::spawn("w-asks", backend()).unwrap();
        let f = SkFunction::builder("sum_asked").build().unwrap();
        let mut asked = 0;
        let total: u64 = worker
            .call_answering(
                &f,
                &Args::new().with("count", &5u32).unwrap(),
                Some(Duration::from_secs(20)),
                &mut |q| {
                    asked += 1;
                    tens(q)
                },
            )
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(total, 10 + 20 + 30 + 40);
        assert_eq!(asked, 5);

        // Questions asked before the caller waits are answered once it does.
        let pending = worker
            .submit(&f, &Args::new().with("count", &3u32).unwrap())
            .unwrap();
        let total: u64 = pending
            .wait_answering(Some(Duration::from_secs(20)), &mut tens)
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(total, 30);

        // The worker stays usable for plain calls.
        let zero: u64 = worker
            .call(&f, &Args::new().with("count", &0u32).unwrap(), None)
            .unwrap()
            .take()
            .unwrap();
        assert_eq!(zero, 0);
    })
}

#[test]
fn a_question_nobody_answers_fails_in_the_worker_saying_why() {
    guarded(|| {
        let worker = Worker::spawn("w-unasked", backend()).unwrap();
        let f = SkFunction::builder("sum_asked").build().unwrap();
        let args = Args::new().with("count", &1u32).unwrap();
        // A plain call answers nothing.
        let err = worker
            .call(&f, &args, Some(Duration::from_secs(20)))
            .unwrap_err();
        let text = sk_core::error_chain(&err);
        assert!(
            text.contains("the parent did not answer: nobody answers questions for this call"),
            "{text}"
        );
        // The parent's own refusal reaches the worker word for word.
        let err = worker
            .call_answering(&f, &args, Some(Duration::from_secs(20)), &mut |_| {
                Err("not today".to_owned())
            })
            .unwrap_err();
        assert!(sk_core::error_chain(&err).contains("the parent did not answer: not today"));
        // Outside a call there is nobody to ask.
        assert!(matches!(
            sk_process::ask_parent(b"?", Duration::from_secs(1)),
            Err(WorkerError::Closed { .. })
        ));
    })
}

/// Asks once and returns how many bytes the answer had, or the error.
#[sk_core::function(crate = ::sk_core)]
fn answer_size() -> Result<usize, String> {
    sk_process::ask_parent(b"big", Duration::from_secs(20))
        .map(|answer| answer.len())
        .map_err(|e| sk_core::error_chain(&e))
}

#[test]
fn an_answer_too_large_for_the_channel_is_refused_at_once_not_lost() {
    guarded(|| {
        let worker = Worker::spawn("w-big-answer", backend()).unwrap();
        let f = SkFunction::builder("answer_size").build().unwrap();
        let big = sk_process::DEFAULT_MAX_FRAME + 1;
        let started = std::time::Instant::now();
        let got =
            worker.call_answering(&f, &Args::new(), Some(Duration::from_secs(30)), &mut |_| {
                Ok(vec![7; big])
            });
        match backend() {
            // A frame over the limit cannot go out: the worker hears why,
            // at once, and its call fails saying so.
            Backend::Process => {
                let err = sk_core::error_chain(&got.unwrap_err());
                assert!(err.contains("the answer cannot be sent"), "{err}");
                assert!(err.contains("exceeds the limit"), "{err}");
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the question waited for its timeout"
                );
            }
            // Threads pass the bytes as they are.
            _ => assert_eq!(got.unwrap().take::<usize>().unwrap(), big),
        }
    })
}
