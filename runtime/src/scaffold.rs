//! `spate new <language> <name>`: writes a ready operator project (source, build, unit test,
//! a pipeline that runs it over a sample input, README) from templates compiled into the
//! binary. The projects point at the guest SDKs of the Spate source tree this binary was built
//! from (they are not published to package registries yet).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The languages operators can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust, with the `spate-guest` crate.
    Rust,
}

/// One file of a template: its path in the project and its text.
type TemplateFile = (&'static str, &'static str);

const PIPELINE: &str = include_str!("../templates/common/pipeline.toml");
const SAMPLE: &str = include_str!("../templates/common/sample.txt");

const RUST: &[TemplateFile] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
    (
        "rust-toolchain.toml",
        include_str!("../templates/rust/rust-toolchain.toml"),
    ),
    ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
    ("README.md", include_str!("../templates/rust/README.md")),
    (".gitignore", include_str!("../templates/rust/gitignore")),
];

/// What a language's project needs besides its files.
struct Kind {
    files: &'static [TemplateFile],
    /// The guest SDK, relative to the source tree.
    sdk: &'static str,
    /// The component the build makes, relative to the project.
    wasm: &'static str,
    /// The build command.
    build: &'static str,
}

fn kind(language: Language) -> Kind {
    match language {
        Language::Rust => Kind {
            files: RUST,
            sdk: "guest-sdk",
            wasm: "target/wasm32-wasip2/release/{{crate}}.wasm",
            build: "cargo build --release --target wasm32-wasip2",
        },
    }
}

/// The Spate source tree this binary was built from.
fn source_tree() -> Result<PathBuf> {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if !tree.join("guest-sdk").is_dir() {
        bail!(
            "`spate new` needs the Spate source tree it was built from ({}), for the guest \
             SDKs; it is not there",
            tree.display()
        );
    }
    Ok(tree)
}

/// Checks an operator name: it becomes a directory, a crate or package name and a file name.
fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "'{name}' is not a valid operator name: use lowercase letters, digits and '-', \
             starting with a letter (e.g. `word-split`)"
        );
    }
    Ok(())
}

/// Writes project `name` for `language` into `parent/name`; returns its directory.
pub fn create(language: Language, name: &str, parent: &Path) -> Result<PathBuf> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let tree = source_tree()?;
    let kind = kind(language);
    let crate_name = name.replace('-', "_");
    let wasm = kind.wasm.replace("{{crate}}", &crate_name);
    let sdk = tree.join(kind.sdk);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{wasm}}", &wasm)
            .replace("{{build}}", kind.build)
    };
    let files = kind
        .files
        .iter()
        .copied()
        .chain([("pipeline.toml", PIPELINE), ("input/sample.txt", SAMPLE)]);
    for (path, text) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, fill(text))
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_projects_filled_in() {
        assert!(check_name("Word Split").is_err());
        assert!(check_name("9lives").is_err());
        let dir = tempfile::tempdir().unwrap();
        let project = create(Language::Rust, "word-split", dir.path()).unwrap();
        let pipeline = std::fs::read_to_string(project.join("pipeline.toml")).unwrap();
        assert!(
            pipeline.contains("plugin = \"target/wasm32-wasip2/release/word_split.wasm\""),
            "{pipeline}"
        );
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"word-split\"") && !manifest.contains("{{"));
        assert!(
            create(Language::Rust, "word-split", dir.path()).is_err(),
            "exists"
        );
    }
}
