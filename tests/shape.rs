//! The built component's shape: it imports only its storage and events (no
//! wasi:*), and exports only the breaker.

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
fn imports_are_storage_and_events_and_the_export_is_breaker() {
    let engine = Engine::new(&Config::new()).unwrap();
    let component = Component::new(&engine, tripswitch::COMPONENT).unwrap();
    let shape = component.component_type();

    let mut imports: Vec<(String, Vec<String>)> = shape
        .imports(&engine)
        .map(|(name, item)| (name.to_string(), functions(&engine, &item.ty)))
        .collect();
    imports.sort();
    assert_eq!(
        imports,
        vec![
            (
                "tripswitch:breaker/events@0.2.0".to_string(),
                vec!["state-changed".to_string()]
            ),
            (
                "tripswitch:breaker/storage@0.2.0".to_string(),
                vec!["compare-and-swap".to_string(), "load".to_string()]
            ),
            // The interface of shared types: it carries types, not a single function.
            ("tripswitch:breaker/types@0.2.0".to_string(), vec![]),
        ]
    );
    assert!(imports.iter().all(|(name, _)| !name.starts_with("wasi:")));

    let exports: Vec<String> = shape
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        exports,
        vec!["tripswitch:breaker/breaker@0.2.0".to_string()]
    );
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
