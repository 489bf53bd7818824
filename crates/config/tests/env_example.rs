//! `.env.example` must list every setting a binary reads: every `env = "KEY"` of a clap
//! argument anywhere in the workspace's sources.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn env_example_lists_every_setting() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(root.join(".env.example")).expect(".env.example exists");
    let listed: Vec<&str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let mut files = Vec::new();
    for dir in ["crates", "seed"] {
        sources(&root.join(dir), &mut files);
    }
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in files
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "src"))
    {
        let text = std::fs::read_to_string(file).expect("readable source");
        for part in text.split("env = \"").skip(1) {
            let key = part.split('"').next().unwrap_or_default();
            seen += 1;
            if !listed.contains(&key) {
                missing.push(format!("{key} ({})", file.display()));
            }
        }
    }
    assert!(seen > 30, "found only {seen} settings: is the scan broken?");
    assert!(
        missing.is_empty(),
        "settings missing from .env.example: {missing:#?}"
    );
}
