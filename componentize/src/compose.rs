//! Composition of components, as `wac plug` does it.

use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// Instantiates `socket` with the exports of `plugs` that match its imports
/// (by name), re-exports the socket's exports, and leaves whatever is still
/// unsatisfied as imports of the result.
pub fn plug(socket: &[u8], plugs: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut graph = CompositionGraph::new();
    let mut register = |name: String, bytes: &[u8]| {
        let package = Package::from_bytes(&name, None, bytes.to_vec(), graph.types_mut())
            .map_err(|e| format!("reading component {name}: {e:#}"))?;
        graph
            .register_package(package)
            .map_err(|e| format!("registering component {name}: {e:#}"))
    };
    let socket = register("tripswitch:socket".into(), socket)?;
    let plugs = plugs
        .iter()
        .enumerate()
        .map(|(i, bytes)| register(format!("tripswitch:plug{i}"), bytes))
        .collect::<Result<Vec<_>, _>>()?;
    wac_graph::plug(&mut graph, plugs, socket).map_err(|e| format!("plugging: {e:#}"))?;
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| format!("encoding the composition: {e:#}"))
}
