//! The dependency rules of ARCHITECTURE.md ("Dependency rules"), checked over the runtime's
//! sources: a module may use only modules of lower layers. The layers are read from
//! ARCHITECTURE.md itself, so the map newcomers read cannot drift from the code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module name -> layer, from the table under "## Dependency rules".
fn layers() -> BTreeMap<String, u32> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md is readable");
    let section = text
        .split("## Dependency rules")
        .nth(1)
        .expect("ARCHITECTURE.md has a '## Dependency rules' section");
    let mut layers = BTreeMap::new();
    for line in section.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() {
                layers.insert(module.to_owned(), layer);
            }
        }
    }
    assert!(!layers.is_empty(), "no layer rows found in ARCHITECTURE.md");
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a file's code (not its comments, not its tests) names.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
        }
    }
    found
}

/// The uses that break the layers in `files`, each (path under src/, its text).
fn violations(layers: &BTreeMap<String, u32>, files: &[(String, String)]) -> Vec<String> {
    let mut broken = Vec::new();
    for (path, text) in files {
        let module = path.split('/').next().unwrap().trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&layer) = layers.get(module) else {
            broken.push(format!(
                "module `{module}` is not in ARCHITECTURE.md's layers"
            ));
            continue;
        };
        for (line, used) in uses(text) {
            if used == module {
                continue;
            }
            match layers.get(&used) {
                Some(&l) if l < layer => {}
                Some(&l) => broken.push(format!(
                    "{path}:{line}: `{module}` (layer {layer}) uses `{used}` (layer {l})"
                )),
                None => broken.push(format!(
                    "{path}:{line}: uses `{used}`, which is not in ARCHITECTURE.md's layers"
                )),
            }
        }
    }
    broken
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let relative = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (relative, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let broken = violations(&layers(), &files);
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn upward_and_sideways_uses_are_found() {
    let layers = layers();
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let files = [
        file("state/mod.rs", "use crate::exec::Worker;\n"),
        file(
            "source/mod.rs",
            "use crate::sink::Output;\nuse crate::batch::BlockBuffer;\n",
        ),
        file("newmodule.rs", "use crate::config::Pipeline;\n"),
        file(
            "plan/mod.rs",
            "use crate::exec::Dataflow;\nuse crate::ops::family;\n",
        ),
    ];
    let broken = violations(&layers, &files);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("`state` (layer 4) uses `exec` (layer 5)"));
    assert!(broken[1].contains("`source` (layer 4) uses `sink` (layer 4)"));
    assert!(broken[2].contains("`newmodule` is not in ARCHITECTURE.md's layers"));
}

#[test]
fn the_check_sees_uses_in_code_only() {
    let text = "use crate::plan::Plan;\n// crate::job in a comment\nfn f() { crate::exec::run(); }\n#[cfg(test)]\nuse crate::cli;\n";
    let names: Vec<String> = uses(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(names, ["plan", "exec"]);
}
