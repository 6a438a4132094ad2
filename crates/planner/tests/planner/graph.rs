//! Topological order and dependency closure.

use warden_planner::{Graph, PlanError, dependency_closure, topological_order};

use crate::builder::pipeline;

#[test]
fn order_puts_needs_first_and_otherwise_keeps_file_order() {
    let p = pipeline()
        .act("c", &["b"])
        .act("a", &[])
        .act("b", &[])
        .act("d", &["a", "c"])
        .act("e", &[])
        .build();
    assert_eq!(topological_order(&p).unwrap(), ["a", "b", "c", "d", "e"]);
    let graph = Graph::new(&p);
    assert_eq!(graph.topological_order().unwrap(), [1, 2, 0, 3, 4]);
    assert_eq!(graph.needs(3).collect::<Vec<_>>(), [Some(1), Some(0)]);
    assert_eq!(graph.index_of("d"), Some(3));
    assert_eq!(graph.name(0), "c");
}

#[test]
fn closure_is_the_needed_actions_in_order() {
    let p = pipeline()
        .act("a", &[])
        .act("b", &["a"])
        .act("c", &["a"])
        .act("d", &["c", "b"])
        .act("e", &[])
        .act("f", &["e"])
        .build();
    assert_eq!(
        dependency_closure(&p, &["d"]).unwrap(),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        dependency_closure(&p, &["f", "b"]).unwrap(),
        ["a", "b", "e", "f"]
    );
    assert_eq!(dependency_closure(&p, &["run_all"]).unwrap().len(), 6);
    assert!(dependency_closure::<&str>(&p, &[]).unwrap().is_empty());
    let err = dependency_closure(&p, &["zzz"]).unwrap_err();
    assert_eq!(err.to_string(), "Action 'zzz' not found in project.yaml");
}

#[test]
fn cycles_are_reported_by_order_and_closure() {
    let p = pipeline()
        .act("ok", &[])
        .act("a", &["ok", "b"])
        .act("b", &["c"])
        .act("c", &["a"])
        .act("after", &["a"])
        .build();
    let want = PlanError::Cycle {
        path: vec!["a".into(), "b".into(), "c".into(), "a".into()],
    };
    assert_eq!(topological_order(&p).unwrap_err(), want);
    assert_eq!(dependency_closure(&p, &["after"]).unwrap_err(), want);
    // The part of the graph that does not reach the cycle is fine.
    assert_eq!(dependency_closure(&p, &["ok"]).unwrap(), ["ok"]);

    let p = pipeline().act("s", &["s"]).build();
    assert_eq!(
        topological_order(&p).unwrap_err().to_string(),
        "Actions form a cycle through their `needs`: s -> s"
    );
}

#[test]
fn unknown_needs_are_reported() {
    let p = pipeline().act("a", &["nope"]).build();
    assert_eq!(
        topological_order(&p).unwrap_err(),
        PlanError::UnknownNeed {
            action: "a".into(),
            need: "nope".into()
        }
    );
}
