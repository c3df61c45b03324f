// Tests may unwrap: a panic is the failure report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use proptest::prelude::*;

use super::*;

fn filled() -> Registry<&'static str> {
    let reg = Registry::new("layers");
    reg.register(Layer::Global, "name", "global").unwrap();
    reg.register(Layer::Internal, "name", "internal").unwrap();
    reg.register(Layer::External, "name", "external").unwrap();
    reg
}

#[test]
fn resolution_order_is_external_internal_global() {
    let reg = filled();
    assert_eq!(
        reg.resolve("name").map(|(l, v)| (l, *v)),
        Some((Layer::External, "external"))
    );

    assert_eq!(
        reg.remove(Layer::External, "name").as_deref(),
        Some(&"external")
    );
    assert_eq!(
        reg.resolve("name").map(|(l, v)| (l, *v)),
        Some((Layer::Internal, "internal"))
    );

    assert_eq!(
        reg.remove(Layer::Internal, "name").as_deref(),
        Some(&"internal")
    );
    assert_eq!(
        reg.resolve("name").map(|(l, v)| (l, *v)),
        Some((Layer::Global, "global"))
    );

    assert_eq!(
        reg.remove(Layer::Global, "name").as_deref(),
        Some(&"global")
    );
    assert_eq!(reg.resolve("name"), None);
    assert!(!reg.contains("name"));
    assert!(reg.is_empty());
}

#[test]
fn removing_a_middle_layer_keeps_the_top_visible() {
    let reg = filled();
    reg.remove(Layer::Internal, "name");
    assert_eq!(reg.get("name").as_deref(), Some(&"external"));
    reg.remove(Layer::External, "name");
    assert_eq!(reg.get("name").as_deref(), Some(&"global"));
}

#[test]
fn get_in_sees_only_its_layer() {
    let reg = Registry::new("r");
    reg.register(Layer::Global, "only-global", 1).unwrap();
    assert_eq!(
        reg.get_in(Layer::Global, "only-global").as_deref(),
        Some(&1)
    );
    assert_eq!(reg.get_in(Layer::External, "only-global"), None);
    assert!(reg.contains_in(Layer::Global, "only-global"));
    assert!(!reg.contains_in(Layer::Internal, "only-global"));
}

#[test]
fn duplicate_is_an_error_and_keeps_the_first_value() {
    let reg = Registry::new("functions");
    reg.register(Layer::External, "resize", 1).unwrap();
    let err = reg.register(Layer::External, "resize", 2).unwrap_err();
    assert_eq!(
        err,
        RegistryError::Duplicate {
            registry: "functions".into(),
            layer: Layer::External,
            name: "resize".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "\"resize\" is already registered in the external layer of registry \"functions\""
    );
    assert_eq!(reg.get("resize").as_deref(), Some(&1));
    // Another layer may hold the same name.
    reg.register(Layer::Internal, "resize", 3).unwrap();
    assert_eq!(reg.len(), 2);
}

#[test]
fn replace_returns_the_previous_value() {
    let reg = Registry::new("r");
    assert_eq!(reg.replace(Layer::Internal, "k", 1), None);
    assert_eq!(reg.replace(Layer::Internal, "k", 2).as_deref(), Some(&1));
    assert_eq!(reg.get("k").as_deref(), Some(&2));
}

#[test]
fn handles_outlive_removal() {
    let reg = Registry::new("r");
    let handle = reg
        .register(Layer::Global, "k", String::from("kept"))
        .unwrap();
    reg.remove(Layer::Global, "k");
    assert_eq!(*handle, "kept");
    assert_eq!(reg.remove(Layer::Global, "k"), None);
}

#[test]
fn require_names_registry_and_name() {
    let reg: Registry<u8> = Registry::new("cycles");
    let err = reg.require("ingest").unwrap_err();
    assert_eq!(
        err,
        RegistryError::NotFound {
            registry: "cycles".into(),
            name: "ingest".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "\"ingest\" is not registered in registry \"cycles\""
    );
}

#[test]
fn entries_are_sorted_by_layer_then_name() {
    let reg = Registry::new("r");
    reg.register(Layer::Global, "b", 1).unwrap();
    reg.register(Layer::Global, "a", 2).unwrap();
    reg.register(Layer::External, "z", 3).unwrap();
    reg.register(Layer::Internal, "m", 4).unwrap();
    reg.register(Layer::External, "c", 5).unwrap();
    let got: Vec<(Layer, String, i32)> = reg
        .entries()
        .into_iter()
        .map(|e| (e.layer, e.name, *e.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (Layer::External, "c".into(), 5),
            (Layer::External, "z".into(), 3),
            (Layer::Internal, "m".into(), 4),
            (Layer::Global, "a".into(), 2),
            (Layer::Global, "b".into(), 1),
        ]
    );
    assert_eq!(reg.names(), ["a", "b", "c", "m", "z"]);
    assert_eq!(reg.names_in(Layer::External), ["c", "z"]);
    assert_eq!(reg.entries_in(Layer::Global).len(), 2);
    assert_eq!(reg.iter().count(), 5);
    assert_eq!((&reg).into_iter().count(), 5);
}

#[test]
fn resolved_lists_the_winning_entries() {
    let reg = filled();
    reg.register(Layer::Global, "other", "g").unwrap();
    let got: Vec<(Layer, String)> = reg
        .resolved()
        .into_iter()
        .map(|e| (e.layer, e.name))
        .collect();
    assert_eq!(
        got,
        vec![
            (Layer::External, "name".into()),
            (Layer::Global, "other".into())
        ]
    );
}

#[test]
fn clear_layer_and_clear() {
    let reg = filled();
    reg.clear_layer(Layer::External);
    assert_eq!(reg.len_in(Layer::External), 0);
    assert_eq!(reg.get("name").as_deref(), Some(&"internal"));
    reg.clear();
    assert!(reg.is_empty());
}

#[test]
fn debug_shows_names_without_values() {
    struct Opaque;
    let reg = Registry::new("opaque");
    reg.register(Layer::Internal, "x", Opaque).unwrap();
    let shown = format!("{reg:?}");
    assert_eq!(
        shown,
        r#"Registry { name: "opaque", external: [], internal: ["x"], global: [] }"#
    );
}

#[test]
fn racing_registers_have_exactly_one_winner() {
    sk_testkit::guarded(|| {
        for round in 0..50 {
            let reg = Arc::new(Registry::new("race"));
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let reg = Arc::clone(&reg);
                    thread::spawn(move || reg.register(Layer::External, "contested", t).is_ok())
                })
                .collect();
            let wins = handles.into_iter().map(|h| h.join().unwrap());
            assert_eq!(wins.filter(|w| *w).count(), 1, "round {round}");
        }
    });
}

/// 8 threads × 1,000 operations on 16 shared names.
///
/// Thread `t` owns the names `t*2` and `t*2+1` (only it removes or
/// replaces them), and all threads race to register the contested names
/// `c0..c7` exactly once, never removing them. Invariants:
/// - each contested name has exactly one winner, and its value stays;
/// - every value a thread successfully registered under its own name is
///   visible until that thread removes it;
/// - the final contents equal each thread's own model.
#[test]
fn concurrent_mixed_operations_keep_invariants() {
    const THREADS: usize = 8;
    const OPS: usize = 1_000;
    sk_testkit::guarded(|| {
        let reg: Arc<Registry<(usize, usize)>> = Arc::new(Registry::new("mixed"));
        let contested_wins = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let reg = Arc::clone(&reg);
                let contested_wins = Arc::clone(&contested_wins);
                thread::spawn(move || {
                    let mut model: BTreeMap<String, (usize, usize)> = BTreeMap::new();
                    let mut won = Vec::new();
                    for i in 0..OPS {
                        let own = format!("own-{}", t * 2 + i % 2);
                        let contested = format!("c{}", i % 8);
                        match i % 5 {
                            0 => {
                                let res = reg.register(Layer::External, own.clone(), (t, i));
                                assert_eq!(res.is_ok(), !model.contains_key(&own));
                                model.entry(own.clone()).or_insert((t, i));
                            }
                            1 => {
                                let old = reg.replace(Layer::External, own.clone(), (t, i));
                                assert_eq!(
                                    old.as_deref().copied(),
                                    model.insert(own.clone(), (t, i))
                                );
                            }
                            2 => {
                                let old = reg.remove(Layer::External, &own);
                                assert_eq!(old.as_deref().copied(), model.remove(&own));
                            }
                            3 => {
                                if reg
                                    .register(Layer::Global, contested.clone(), (t, i))
                                    .is_ok()
                                {
                                    contested_wins.fetch_add(1, Ordering::SeqCst);
                                    won.push((contested.clone(), (t, i)));
                                }
                            }
                            _ => {
                                // Reads of contested names never see them vanish
                                // once registered.
                                if let Some((wt, _)) =
                                    reg.get_in(Layer::Global, &contested).as_deref()
                                {
                                    assert!(*wt < THREADS);
                                }
                            }
                        }
                        assert_eq!(
                            reg.get_in(Layer::External, &own).as_deref().copied(),
                            model.get(&own).copied()
                        );
                    }
                    (model, won)
                })
            })
            .collect();
        let mut expected: BTreeMap<(Layer, String), (usize, usize)> = BTreeMap::new();
        for handle in handles {
            let (model, won) = handle.join().unwrap();
            for (name, value) in model {
                expected.insert((Layer::External, name), value);
            }
            for (name, value) in won {
                assert!(expected.insert((Layer::Global, name), value).is_none());
            }
        }
        assert_eq!(contested_wins.load(Ordering::SeqCst), 8);
        let actual: BTreeMap<(Layer, String), (usize, usize)> = reg
            .entries()
            .into_iter()
            .map(|e| ((e.layer, e.name), *e.value))
            .collect();
        assert_eq!(actual, expected);
        assert_eq!(reg.len(), expected.len());
    });
}

/// 8 threads × 1,000 register/replace/remove/get operations on 4 names
/// that every thread touches. Each inserted value is unique, so the run
/// must conserve them: every value put in was either taken out exactly once
/// (by `remove` or as the old value of `replace`) or is still there at the
/// end, and a name is present at the end exactly when it was filled from
/// empty once more than it was emptied.
#[test]
fn concurrent_churn_on_shared_names_conserves_values() {
    const THREADS: usize = 8;
    const OPS: usize = 1_000;
    sk_testkit::guarded(|| {
        let reg: Arc<Registry<(usize, usize)>> = Arc::new(Registry::new("churn"));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let reg = Arc::clone(&reg);
                thread::spawn(move || {
                    let mut inserted = Vec::new();
                    let mut taken = Vec::new();
                    // Per name: fills of an empty slot minus emptyings.
                    let mut balance = [0i64; 4];
                    for i in 0..OPS {
                        let slot = (i * 7 + t) % 4;
                        let name = format!("s{slot}");
                        let value = (t, i);
                        match (i + t) % 4 {
                            0 => {
                                if reg.register(Layer::Internal, name, value).is_ok() {
                                    inserted.push(value);
                                    balance[slot] += 1;
                                }
                            }
                            1 => {
                                inserted.push(value);
                                match reg.replace(Layer::Internal, name, value) {
                                    Some(old) => taken.push(*old),
                                    None => balance[slot] += 1,
                                }
                            }
                            2 => {
                                if let Some(old) = reg.remove(Layer::Internal, &name) {
                                    taken.push(*old);
                                    balance[slot] -= 1;
                                }
                            }
                            _ => {
                                if let Some(seen) = reg.get(&name) {
                                    assert!(seen.0 < THREADS && seen.1 < OPS);
                                }
                            }
                        }
                    }
                    (inserted, taken, balance)
                })
            })
            .collect();
        let mut inserted = Vec::new();
        let mut out = Vec::new();
        let mut balance = [0i64; 4];
        for handle in handles {
            let (ins, taken, bal) = handle.join().unwrap();
            inserted.extend(ins);
            out.extend(taken);
            for (total, b) in balance.iter_mut().zip(bal) {
                *total += b;
            }
        }
        let remaining = reg.entries();
        out.extend(remaining.iter().map(|e| *e.value));
        inserted.sort();
        out.sort();
        assert_eq!(inserted, out, "values were lost or duplicated");
        for (slot, b) in balance.iter().enumerate() {
            let present = reg.contains_in(Layer::Internal, &format!("s{slot}"));
            assert_eq!(*b, i64::from(present), "name s{slot}");
        }
        assert_eq!(reg.len(), remaining.len());
    });
}

#[derive(Clone, Debug)]
enum Op {
    Register(Layer, u8, u16),
    Replace(Layer, u8, u16),
    Remove(Layer, u8),
    ClearLayer(Layer),
}

fn layer() -> impl Strategy<Value = Layer> {
    prop::sample::select(Layer::RESOLUTION_ORDER.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (layer(), 0u8..6, any::<u16>()).prop_map(|(l, n, v)| Op::Register(l, n, v)),
        2 => (layer(), 0u8..6, any::<u16>()).prop_map(|(l, n, v)| Op::Replace(l, n, v)),
        3 => (layer(), 0u8..6).prop_map(|(l, n)| Op::Remove(l, n)),
        1 => layer().prop_map(Op::ClearLayer),
    ]
}

proptest! {
    #[test]
    fn matches_a_btreemap_model(ops in prop::collection::vec(op(), 0..64)) {
        let reg = Registry::new("model");
        let mut model: BTreeMap<(Layer, String), u16> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Register(l, n, v) => {
                    let name = format!("n{n}");
                    let res = reg.register(l, name.clone(), v);
                    let key = (l, name);
                    if let Some(existing) = model.get(&key) {
                        let duplicate_here = matches!(res, Err(RegistryError::Duplicate { layer, .. }) if layer == l);
                        prop_assert!(duplicate_here);
                        prop_assert_eq!(reg.get_in(l, &key.1).map(|v| *v), Some(*existing));
                    } else {
                        prop_assert_eq!(res.ok().map(|v| *v), Some(v));
                        model.insert(key, v);
                    }
                }
                Op::Replace(l, n, v) => {
                    let name = format!("n{n}");
                    let old = reg.replace(l, name.clone(), v);
                    prop_assert_eq!(old.as_deref().copied(), model.insert((l, name), v));
                }
                Op::Remove(l, n) => {
                    let name = format!("n{n}");
                    let old = reg.remove(l, &name);
                    prop_assert_eq!(old.as_deref().copied(), model.remove(&(l, name)));
                }
                Op::ClearLayer(l) => {
                    reg.clear_layer(l);
                    model.retain(|(ml, _), _| *ml != l);
                }
            }
            // Full state, in order.
            let entries: Vec<((Layer, String), u16)> =
                reg.entries().into_iter().map(|e| ((e.layer, e.name), *e.value)).collect();
            let expected: Vec<((Layer, String), u16)> = model.clone().into_iter().collect();
            prop_assert_eq!(entries, expected);
            prop_assert_eq!(reg.len(), model.len());
            // Resolution agrees with the model.
            for n in 0..6u8 {
                let name = format!("n{n}");
                let want = Layer::RESOLUTION_ORDER
                    .into_iter()
                    .find_map(|l| model.get(&(l, name.clone())).map(|v| (l, *v)));
                prop_assert_eq!(reg.resolve(&name).map(|(l, v)| (l, *v)), want);
            }
            let names: BTreeSet<String> = model.keys().map(|(_, n)| n.clone()).collect();
            prop_assert_eq!(reg.names(), names.into_iter().collect::<Vec<_>>());
        }
    }
}

#[test]
fn the_generation_changes_with_every_change_and_only_then() {
    let reg = filled();
    let mut seen = reg.generation();
    let mut changed = |reg: &Registry<&'static str>, expected: bool, what: &str| {
        let now = reg.generation();
        assert_eq!(now != seen, expected, "{what}");
        seen = now;
    };
    let _ = reg.get("name");
    let _ = reg.register(Layer::Global, "name", "again");
    let _ = reg.remove(Layer::Global, "absent");
    changed(
        &reg,
        false,
        "a lookup, a refused register, removing nothing",
    );
    reg.register(Layer::Global, "other", "x").unwrap();
    changed(&reg, true, "register");
    reg.replace(Layer::Global, "other", "y");
    changed(&reg, true, "replace");
    reg.remove(Layer::External, "name");
    changed(&reg, true, "remove");
    reg.clear_layer(Layer::Internal);
    changed(&reg, true, "clear_layer");
    reg.clear();
    changed(&reg, true, "clear");
}
