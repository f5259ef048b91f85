//! What ships inside the `spate` binary: the operators of `plugins/` (built by build.rs) and the
//! demo's text and pipeline.

/// The bundled operators by name, as pipeline files refer to them (`plugin = "tokenize"`).
pub const PLUGINS: &[(&str, &[u8])] = &[
    (
        "tokenize",
        include_bytes!(concat!(env!("OUT_DIR"), "/tokenize.wasm")),
    ),
    ("sum", include_bytes!(concat!(env!("OUT_DIR"), "/sum.wasm"))),
    (
        "filter",
        include_bytes!(concat!(env!("OUT_DIR"), "/filter.wasm")),
    ),
    (
        "subtract",
        include_bytes!(concat!(env!("OUT_DIR"), "/subtract.wasm")),
    ),
    (
        "running-sum",
        include_bytes!(concat!(env!("OUT_DIR"), "/running-sum.wasm")),
    ),
];

/// The component bytes of bundled operator `name`.
pub fn plugin(name: &str) -> Option<&'static [u8]> {
    PLUGINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of the bundled operators.
pub fn plugin_names() -> Vec<&'static str> {
    PLUGINS.iter().map(|(n, _)| *n).collect()
}

/// The demo text (public-domain: the Gettysburg Address, Shelley's "Ozymandias" and the first
/// stanzas of Poe's "The Raven").
pub const DEMO_TEXT: &str = include_str!("../assets/demo.txt");

/// The pipeline `spate demo` runs: word count over [`DEMO_TEXT`], printed every second.
pub const DEMO_PIPELINE: &str = include_str!("../../examples/demo-wordcount.toml");
