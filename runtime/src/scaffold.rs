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
    /// Python, with componentize-py and `guest-sdk/python`.
    Python,
    /// JavaScript, with componentize-js and `guest-sdk/js`.
    Js,
    /// C, with clang for wasm32-wasi and `guest-sdk/c`.
    C,
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

const PYTHON: &[TemplateFile] = &[
    ("app.py", include_str!("../templates/python/app.py")),
    (
        "test_app.py",
        include_str!("../templates/python/test_app.py"),
    ),
    ("build.sh", include_str!("../templates/python/build.sh")),
    ("README.md", include_str!("../templates/python/README.md")),
    (".gitignore", include_str!("../templates/python/gitignore")),
];

const JS: &[TemplateFile] = &[
    ("app.js", include_str!("../templates/js/app.js")),
    ("app.test.js", include_str!("../templates/js/app.test.js")),
    ("build.sh", include_str!("../templates/js/build.sh")),
    ("package.json", include_str!("../templates/js/package.json")),
    ("README.md", include_str!("../templates/js/README.md")),
    (".gitignore", include_str!("../templates/js/gitignore")),
];

const C: &[TemplateFile] = &[
    ("operator.c", include_str!("../templates/c/operator.c")),
    ("test.c", include_str!("../templates/c/test.c")),
    ("test.sh", include_str!("../templates/c/test.sh")),
    ("build.sh", include_str!("../templates/c/build.sh")),
    ("README.md", include_str!("../templates/c/README.md")),
    (".gitignore", include_str!("../templates/c/gitignore")),
];

/// What a language's project needs besides its files.
struct Kind {
    files: &'static [TemplateFile],
    /// The guest SDK, relative to the source tree.
    sdk: &'static str,
    /// SDK files copied into the project: (path in the source tree, path in the project).
    vendored: &'static [(&'static str, &'static str)],
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
            vendored: &[],
        },
        Language::Python => Kind {
            files: PYTHON,
            sdk: "guest-sdk/python",
            wasm: "build/{{name}}.wasm",
            build: "./build.sh",
            vendored: &[],
        },
        // componentize-js only follows relative imports inside the operator's directory, so
        // the SDK is copied in (as `npm install` would once it is published).
        Language::Js => Kind {
            files: JS,
            sdk: "guest-sdk/js",
            wasm: "build/{{name}}.wasm",
            build: "./build.sh",
            vendored: &[
                ("guest-sdk/js/spate-guest.js", "spate-guest/spate-guest.js"),
                (
                    "guest-sdk/js/unicode-tables.js",
                    "spate-guest/unicode-tables.js",
                ),
            ],
        },
        Language::C => Kind {
            files: C,
            sdk: "guest-sdk/c",
            wasm: "build/{{name}}.wasm",
            build: "./build.sh",
            vendored: &[],
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
    let wasm = kind
        .wasm
        .replace("{{crate}}", &crate_name)
        .replace("{{name}}", name);
    let sdk = tree.join(kind.sdk);
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{tree}}", &tree.display().to_string())
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
        write(&target, &fill(text))?;
    }
    for (from, to) in kind.vendored {
        let source = tree.join(from);
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        write(&dir.join(to), &text)?;
    }
    Ok(dir)
}

/// Writes one project file (scripts executable), creating its directory.
fn write(target: &Path, text: &str) -> Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(target, text).with_context(|| format!("cannot write {}", target.display()))?;
    if target.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", target.display()))?;
    }
    Ok(())
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

    #[test]
    fn other_languages_get_their_scripts_and_sdk_copies() {
        let dir = tempfile::tempdir().unwrap();
        for (language, name) in [
            (Language::Python, "py-op"),
            (Language::Js, "js-op"),
            (Language::C, "c-op"),
        ] {
            let project = create(language, name, dir.path()).unwrap();
            let pipeline = std::fs::read_to_string(project.join("pipeline.toml")).unwrap();
            assert!(
                pipeline.contains(&format!("plugin = \"build/{name}.wasm\"")),
                "{pipeline}"
            );
            use std::os::unix::fs::PermissionsExt;
            let build = std::fs::metadata(project.join("build.sh")).unwrap();
            assert_eq!(build.permissions().mode() & 0o111, 0o111, "{name}");
            let script = std::fs::read_to_string(project.join("build.sh")).unwrap();
            assert!(!script.contains("{{"), "{script}");
        }
        assert!(dir.path().join("js-op/spate-guest/spate-guest.js").exists());
        assert!(
            dir.path()
                .join("js-op/spate-guest/unicode-tables.js")
                .exists()
        );
    }
}
