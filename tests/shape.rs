//! The built component's shape: it imports no function (only the interface
//! of shared types, which carries none; no wasi:*), and exports only the
//! breaker's stepped interface.

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Config, Engine};

/// The names of an instance import's or export's functions.
fn functions(engine: &Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let mut names: Vec<String> = instance
                .exports(engine)
                .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                .map(|(name, _)| name.to_string())
                .collect();
            names.sort();
            names
        }
        other => panic!("expected an instance, found {other:?}"),
    }
}

#[test]
fn the_component_imports_nothing_and_exports_breaker() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::new(&engine, tripswitch::COMPONENT).unwrap();
    let shape = component.component_type();

    let imports: Vec<(String, Vec<String>)> = shape
        .imports(&engine)
        .map(|(name, item)| (name.to_string(), functions(&engine, &item.ty)))
        .collect();
    // The interface of shared types, at most: it carries types, no function.
    assert!(
        imports
            .iter()
            .all(|(name, functions)| name == "tripswitch:breaker/types@0.3.0"
                && functions.is_empty()),
        "{imports:?}"
    );

    let exports: Vec<(String, Vec<String>)> = shape
        .exports(&engine)
        .map(|(name, item)| (name.to_string(), functions(&engine, &item.ty)))
        .collect();
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert_eq!(exports[0].0, "tripswitch:breaker/breaker@0.3.0");
    for step in ["open", "resume", "abandon", "settings", "create", "name"] {
        assert!(
            exports[0].1.iter().any(|f| f.ends_with(step)),
            "{step} not in {:?}",
            exports[0].1
        );
    }
}

#[test]
fn the_component_is_small() {
    // A pure component with no WASI adapter stays well under 200 KB.
    assert!(
        tripswitch::COMPONENT.len() < 200_000,
        "{} bytes",
        tripswitch::COMPONENT.len()
    );
}
