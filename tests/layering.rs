//! The direction of dependencies inside the crate, checked on the sources:
//! domain ← storage ← app ← {grpc ← http, cli} ← startup ← main. A module may use
//! the ones below it, never one above it or a sibling front door; `metrics`
//! may be used by all and uses none.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// Each module, and the crate modules it must never import.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "storage",
            "app",
            "grpc",
            "http",
            "cli",
            "startup",
            "database",
            "config",
            "proto",
            "telemetry",
            "tls",
        ],
    ),
    (
        "storage",
        &[
            "app",
            "grpc",
            "http",
            "cli",
            "startup",
            "database",
            "config",
            "proto",
            "telemetry",
            "tls",
        ],
    ),
    (
        "app",
        &[
            "grpc",
            "http",
            "cli",
            "startup",
            "database",
            "config",
            "proto",
            "telemetry",
            "tls",
        ],
    ),
    (
        "grpc",
        &["http", "cli", "startup", "database", "config", "tls"],
    ),
    // The HTTP face only transcodes into gRPC: it never calls the app or
    // the database itself.
    (
        "http",
        &[
            "app", "storage", "cli", "startup", "database", "config", "tls",
        ],
    ),
    ("cli", &["grpc", "http", "startup", "tls"]),
    // The metrics vocabulary every layer counts with imports none of them,
    // so that storage and app can count without knowing the front doors.
    (
        "metrics",
        &[
            "domain",
            "storage",
            "app",
            "grpc",
            "http",
            "cli",
            "startup",
            "database",
            "config",
            "proto",
            "telemetry",
            "tls",
        ],
    ),
];

/// The Rust files of module `name`: `src/name.rs` and everything under `src/name/`.
fn files_of(name: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level crate modules a source names through `crate::`, whether as
/// `crate::x::...` or inside `crate::{x, y::z}`; comments are skipped.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // The names at depth 0 of the braced group.
            let mut depth = 0;
            let mut name = String::new();
            let mut expecting = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expecting = true,
                    c if expecting && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ if expecting && !name.is_empty() => {
                        found.insert(std::mem::take(&mut name));
                        expecting = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
        rest = after;
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let mut violations = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let files = files_of(module);
        assert!(!files.is_empty(), "no sources found for {module}");
        for file in files {
            let source = fs::read_to_string(&file).expect("a readable source");
            for import in crate_imports(&source) {
                if forbidden.contains(&import.as_str()) {
                    violations.push(format!("{} imports crate::{import}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_import_reader_finds_single_and_grouped_imports() {
    let source = "use crate::{\n    app::{self, App},\n    domain::{Error, Reason},\n};\n\
                  // use crate::cli;\nfn f() { crate::storage::connect(); }\n";
    let found: Vec<String> = crate_imports(source).into_iter().collect();
    assert_eq!(found, ["app", "domain", "storage"]);
}

#[test]
fn the_front_doors_do_use_the_app_layer() {
    // Guards the check itself: if the reader found nothing, it would pass vacuously.
    for module in ["grpc", "cli"] {
        let uses_app = files_of(module).iter().any(|f| {
            crate_imports(&fs::read_to_string(f).expect("a readable source")).contains("app")
        });
        assert!(uses_app, "{module} never imports crate::app");
    }
}

#[test]
fn the_http_face_goes_through_grpc() {
    let imports: BTreeSet<String> = files_of("http")
        .iter()
        .flat_map(|f| crate_imports(&fs::read_to_string(f).expect("a readable source")))
        .collect();
    assert!(imports.contains("grpc"), "{imports:?}");
    assert!(imports.contains("proto"), "{imports:?}");
}
