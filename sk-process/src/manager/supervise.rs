//! The supervision thread of a [`ProcessManager`](super::ProcessManager)
//! and the stopping of children it shares with the manager.

use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Select};

use super::{ChildState, Control, ManagerEvent, Phase, REAP_WAIT, Shared, State};
use crate::commander::BudgetSlot;
use crate::error::WorkerError;
use crate::supervisor::Decision;
use crate::vocab::ChildId;
use crate::vocab::Exit;
use crate::worker::{Worker, WorkerEvent};

/// A child's worker and slot, taken out of the manager to be stopped.
pub(super) struct Taken {
    pub(super) name: String,
    pub(super) worker: Option<Worker>,
    pub(super) _slot: Option<BudgetSlot>,
}

/// Takes every child's worker and slot (in start order), making their
/// exits stale.
pub(super) fn take_all(state: &mut State, to: ChildState) -> Vec<Taken> {
    state
        .children
        .values_mut()
        .map(|c| {
            c.incarnation += 1;
            c.watch = None;
            c.state = to;
            Taken {
                name: c.name.clone(),
                worker: c.worker.take(),
                _slot: c.slot.take(),
            }
        })
        .collect()
}

/// Stops the workers in reverse start order; the names of those still
/// alive afterwards.
pub(super) fn stop_all(taken: &[Taken], grace: Duration) -> Vec<String> {
    for t in taken.iter().rev() {
        if let Some(worker) = &t.worker {
            stop_and_reap(worker, grace);
        }
    }
    taken
        .iter()
        .filter(|t| t.worker.as_ref().is_some_and(Worker::is_alive))
        .map(|t| t.name.clone())
        .collect()
}

/// Stops `worker` (killed after `grace`) and waits briefly for its exit to
/// be reported.
pub(super) fn stop_and_reap(worker: &Worker, grace: Duration) {
    worker.stop(grace);
    let (ended, end) = crossbeam::channel::bounded(1);
    worker.watch(ended);
    let _ = end.recv_timeout(REAP_WAIT);
}

/// The supervision loop: waits for an exit of a current incarnation (or a
/// control message) and carries out the supervisor's decision.
pub(super) fn supervise(shared: &Shared, control: &Receiver<Control>) {
    loop {
        let watched: Vec<(ChildId, u64, Receiver<WorkerEvent>)> = {
            let state = shared.state.lock();
            if state.phase != Phase::Running {
                return;
            }
            state
                .children
                .iter()
                .filter_map(|(&id, c)| c.watch.clone().map(|rx| (id, c.incarnation, rx)))
                .collect()
        };
        let mut select = Select::new();
        select.recv(control);
        for (_, _, rx) in &watched {
            select.recv(rx);
        }
        let operation = select.select();
        let index = operation.index();
        if index == 0 {
            match operation.recv(control) {
                Ok(Control::Changed) => continue,
                Ok(Control::Stop) | Err(_) => return,
            }
        }
        let (id, incarnation, rx) = &watched[index - 1];
        let received = operation.recv(rx);
        let exit = {
            let mut state = shared.state.lock();
            if state.phase != Phase::Running {
                return;
            }
            let Some(child) = state.children.get_mut(id) else {
                continue;
            };
            if child.incarnation != *incarnation {
                continue; // stopped or replaced by the manager meanwhile
            }
            child.watch = None;
            // The worker handle is held by the child, so its watchers
            // cannot be dropped without a report; be safe anyway.
            let event = match received {
                Ok(event) => event,
                Err(_) => WorkerEvent {
                    worker: child.name.clone(),
                    pid: child.worker.as_ref().map_or(0, Worker::pid),
                    exit: Exit::Failed("its exit was not reported".to_owned()),
                },
            };
            shared.emit(ManagerEvent::Exited {
                id: *id,
                name: child.name.clone(),
                pid: event.pid,
                exit: event.exit.clone(),
            });
            event.exit
        };
        handle_exit(shared, *id, exit);
    }
}

/// Feeds an exit to the supervisor and carries out the decisions, feeding
/// back restarts that failed to start.
fn handle_exit(shared: &Shared, child: ChildId, exit: Exit) {
    let mut pending = vec![(child, exit)];
    while let Some((child, exit)) = pending.pop() {
        let decision = {
            let mut state = shared.state.lock();
            if state.phase != Phase::Running {
                return;
            }
            state.supervisor.on_exit(child, &exit, Instant::now())
        };
        match decision {
            Decision::Remove(id) => remove(shared, id),
            Decision::Restart { stop, start } => pending.extend(restart(shared, &stop, &start)),
            Decision::Escalate { restarts, within } => {
                escalate(shared, restarts, within);
                return;
            }
            _ => {}
        }
    }
}

/// Takes a child that is no longer supervised off the manager.
fn remove(shared: &Shared, id: ChildId) {
    let removed = shared.state.lock().children.remove(&id);
    if let Some(removed) = removed {
        let name = removed.name.clone();
        drop(removed); // gives the slot back
        shared.emit(ManagerEvent::Removed { id, name });
    }
}

/// Stops the still-running children of `stop` (in reverse order), removes
/// those not in `start` (temporary ones), and starts those of `start` again
/// (in order); the children that could not be started, with their failure
/// as an exit.
fn restart(shared: &Shared, stop: &[ChildId], start: &[ChildId]) -> Vec<(ChildId, Exit)> {
    let old: Vec<Worker> = {
        let mut state = shared.state.lock();
        stop.iter()
            .filter_map(|id| {
                let c = state.children.get_mut(id)?;
                c.incarnation += 1;
                c.watch = None;
                c.state = ChildState::Restarting;
                c.worker.take()
            })
            .collect()
    };
    for worker in old.iter().rev() {
        if worker.is_alive() {
            stop_and_reap(worker, shared.stop_grace);
        }
    }
    drop(old);
    for &id in stop.iter().filter(|id| !start.contains(id)) {
        remove(shared, id);
    }
    let mut failed = Vec::new();
    for &id in start {
        let name = {
            let state = shared.state.lock();
            if state.phase != Phase::Running {
                return Vec::new();
            }
            match state.children.get(&id) {
                Some(c) => c.name.clone(),
                None => continue,
            }
        };
        let worker = match Worker::spawn(name.clone(), shared.backend) {
            Ok(worker) => worker,
            Err(e) => {
                // A restart whose worker died (or was killed) while
                // starting: reported as a restart and an exit, like any
                // other, and fed back to the supervisor as one.
                let exit = Exit::Failed(format!("restart failed: {e}"));
                tracing::warn!(manager = %shared.name, child = %name, error = %e, "restart failed");
                let pid = match &e {
                    WorkerError::Died { pid, .. }
                    | WorkerError::NotDelivered { pid, .. }
                    | WorkerError::MissingInit { pid, .. } => *pid,
                    _ => 0,
                };
                let mut state = shared.state.lock();
                if let Some(c) = state.children.get_mut(&id) {
                    c.restarts += 1;
                    let restarts = c.restarts;
                    shared.emit(ManagerEvent::Restarted {
                        id,
                        name: name.clone(),
                        pid,
                        restarts,
                    });
                    shared.emit(ManagerEvent::Exited {
                        id,
                        name,
                        pid,
                        exit: exit.clone(),
                    });
                    failed.push((id, exit));
                }
                continue;
            }
        };
        let (tx, rx) = channel::bounded(1);
        let mut state = shared.state.lock();
        let installed = state.phase == Phase::Running && state.children.contains_key(&id);
        if !installed {
            drop(state);
            stop_and_reap(&worker, shared.stop_grace);
            continue;
        }
        let Some(c) = state.children.get_mut(&id) else {
            continue; // checked just above, under the same lock
        };
        worker.watch(tx);
        let pid = worker.pid();
        c.incarnation += 1;
        c.watch = Some(rx);
        c.worker = Some(worker);
        c.restarts += 1;
        c.state = ChildState::Running;
        let restarts = c.restarts;
        tracing::info!(manager = %shared.name, child = %name, pid, restarts, "child restarted");
        shared.emit(ManagerEvent::Restarted {
            id,
            name,
            pid,
            restarts,
        });
    }
    failed
}

/// Gives up: stops every child, gives the budget back, refuses more work.
fn escalate(shared: &Shared, restarts: u32, within: Duration) {
    let taken = {
        let mut state = shared.state.lock();
        if state.phase != Phase::Running {
            return;
        }
        state.phase = Phase::Escalated { restarts, within };
        take_all(&mut state, ChildState::Stopped)
    };
    tracing::error!(
        manager = %shared.name,
        restarts,
        within = ?within,
        "too many restarts: escalated, every child stopped"
    );
    let _ = stop_all(&taken, shared.stop_grace);
    drop(taken);
    shared.emit(ManagerEvent::Escalated { restarts, within });
}
