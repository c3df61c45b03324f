//! Unit tests for stop tokens: clones, children, waiting, the current token.

use std::thread;

use super::*;

#[test]
fn stop_is_seen_by_clones() {
    let token = StopToken::new();
    let clone = token.clone();
    assert!(!clone.is_stopped());
    token.stop();
    token.stop();
    assert!(clone.is_stopped());
    assert!(clone.same_as(&token));
    assert!(!clone.same_as(&StopToken::new()));
}

#[test]
fn children_follow_parents_but_not_the_other_way() {
    let root = StopToken::new();
    let a = root.child();
    let a1 = a.child();
    let b = root.child();
    a.stop();
    assert!(a.is_stopped() && a1.is_stopped());
    assert!(!root.is_stopped() && !b.is_stopped());
    root.stop();
    assert!(b.is_stopped());
    assert!(root.child().is_stopped(), "a late child starts stopped");
}

#[test]
fn deep_chains_stop_without_recursion() {
    let root = StopToken::new();
    let mut tokens = vec![root.clone()];
    for _ in 0..100_000 {
        let next = tokens[tokens.len() - 1].child();
        tokens.push(next);
    }
    root.stop();
    assert!(tokens.iter().all(StopToken::is_stopped));
}

#[test]
fn dropped_children_are_pruned() {
    let root = StopToken::new();
    for _ in 0..1000 {
        drop(root.child());
    }
    let kept = root.child();
    assert!(root.inner.children.lock().len() < 100);
    root.stop();
    assert!(kept.is_stopped());
}

#[test]
fn wait_timeout_times_out_when_not_stopped() {
    let token = StopToken::new();
    assert!(!token.wait_timeout(Duration::from_millis(5)));
    assert!(!token.wait_timeout(Duration::ZERO));
    token.stop();
    assert!(token.wait_timeout(Duration::ZERO));
}

#[test]
fn wait_timeout_wakes_promptly_on_stop() {
    sk_testkit::guarded(|| {
        let root = StopToken::new();
        let child = root.child();
        let waiter = thread::spawn(move || {
            let start = Instant::now();
            let stopped = child.wait_timeout(Duration::from_secs(30));
            (stopped, start.elapsed())
        });
        thread::sleep(Duration::from_millis(5));
        root.stop();
        let (stopped, waited) = waiter.join().unwrap();
        assert!(stopped);
        assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    });
}

#[test]
fn wait_timeout_with_huge_timeout_still_wakes() {
    sk_testkit::guarded(|| {
        let token = StopToken::new();
        let waiter = {
            let token = token.clone();
            thread::spawn(move || token.wait_timeout(Duration::MAX))
        };
        thread::sleep(Duration::from_millis(2));
        token.stop();
        assert!(waiter.join().unwrap());
    });
}

#[test]
fn enter_sets_and_restores_the_current_token() {
    assert!(StopToken::current().is_none());
    let outer = StopToken::new();
    let inner = StopToken::new();
    outer.enter(|| {
        assert!(StopToken::current().unwrap().same_as(&outer));
        inner.enter(|| {
            assert!(StopToken::current().unwrap().same_as(&inner));
            inner.stop();
            assert!(StopToken::current_is_stopped());
        });
        assert!(StopToken::current().unwrap().same_as(&outer));
        assert!(!StopToken::current_is_stopped());
    });
    assert!(StopToken::current().is_none());
}

#[test]
fn enter_restores_after_a_panic() {
    let token = StopToken::new();
    let result = std::panic::catch_unwind(|| token.enter(|| panic!("inside")));
    assert!(result.is_err());
    assert!(StopToken::current().is_none());
}

#[test]
fn current_is_per_thread() {
    sk_testkit::guarded(|| {
        let token = StopToken::new();
        token.enter(|| {
            let seen = thread::spawn(|| StopToken::current().is_some())
                .join()
                .unwrap();
            assert!(!seen);
        });
    });
}

#[test]
fn concurrent_child_creation_and_stop_never_miss_a_child() {
    sk_testkit::guarded(|| {
        for _ in 0..50 {
            let root = StopToken::new();
            let maker = {
                let root = root.clone();
                thread::spawn(move || (0..200).map(|_| root.child()).collect::<Vec<_>>())
            };
            root.stop();
            let children = maker.join().unwrap();
            assert!(children.iter().all(StopToken::is_stopped));
        }
    });
}

#[test]
fn debug_shows_the_state() {
    let token = StopToken::new();
    assert_eq!(format!("{token:?}"), "StopToken { stopped: false }");
    token.stop();
    assert_eq!(format!("{token:?}"), "StopToken { stopped: true }");
}
