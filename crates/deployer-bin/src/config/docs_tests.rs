//! Every config snippet in the README and every config file in `examples/` is parsed and
//! validated here, so the docs cannot drift from the code.

use std::path::{Path, PathBuf};

use super::secret::EnvSource;
use super::{Overrides, parse};

/// Answers every variable with a plausible secret: the docs reference many by name.
struct AnySecret;

impl EnvSource for AnySecret {
    fn var(&self, name: &str) -> Option<String> {
        Some(match name {
            n if n.ends_with("_URL") => {
                "https://hooks.example.com/services/T000/B000/XXXX".to_owned()
            }
            _ => "0123456789abcdef0123456789abcdef".to_owned(),
        })
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The ```toml blocks of a Markdown file, with the line each starts on.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```toml") => current = Some((n + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Where the docs put certificates; the check writes real ones in their place.
const DOCS_TLS_DIR: &str = "/etc/deployer/tls/";

fn check(name: &str, text: &str) {
    let certs = tempfile::tempdir().expect("a temp dir");
    let text = with_real_certificates(text, certs.path());
    if let Err(errors) = parse(name, &text, &Overrides::default(), &AnySecret) {
        panic!("{name} does not validate:\n{errors}\n---\n{text}");
    }
}

/// `text` with every `/etc/deployer/tls/NAME.crt` and `.key` it names replaced by a
/// self-signed pair written to `dir`.
fn with_real_certificates(text: &str, dir: &Path) -> String {
    let mut text = text.to_owned();
    while let Some(start) = text.find(DOCS_TLS_DIR) {
        let rest = &text[start + DOCS_TLS_DIR.len()..];
        let end = rest.find('"').expect("a quoted path");
        let file = &rest[..end];
        let stem = file
            .rsplit_once('.')
            .map_or(file, |(stem, _)| stem)
            .to_owned();
        let (cert, key) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        if !cert.exists() {
            let issued = rcgen::generate_simple_self_signed(vec![format!("{stem}.example.com")])
                .expect("a certificate");
            std::fs::write(&cert, issued.cert.pem()).expect("write the certificate");
            std::fs::write(&key, issued.signing_key.serialize_pem()).expect("write the key");
        }
        let real = dir.join(file);
        text.replace_range(
            start..start + DOCS_TLS_DIR.len() + end,
            &real.display().to_string(),
        );
    }
    text
}

#[test]
fn every_toml_snippet_in_the_readme_validates() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let blocks = toml_blocks(&readme);
    assert!(blocks.len() >= 8, "found only {} toml blocks", blocks.len());
    for (line, text) in blocks {
        check(&format!("README.md (block at line {line})"), &text);
    }
}

#[test]
fn every_example_config_validates() {
    let dir = workspace().join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "toml")
            && path.file_name() != Some("Cargo.toml".as_ref())
        {
            let text = std::fs::read_to_string(&path).expect("readable");
            check(&path.display().to_string(), &text);
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "examples/deployer.toml and examples/demo.toml at least"
    );
}

#[test]
fn the_markdown_reader_finds_blocks() {
    let md = "text\n```toml\na = 1\n```\n```sh\nls\n```\n  ```toml\nb = 2\n  ```\n";
    assert_eq!(
        toml_blocks(md),
        vec![(2, "a = 1\n".to_owned()), (8, "b = 2\n".to_owned())]
    );
}

#[test]
fn the_readme_key_table_shows_every_range_the_config_enforces() {
    use super::bounds::{COUNTS, DURATIONS};
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let ranges = DURATIONS
        .iter()
        .map(|(row, name, span)| (*row, *name, span.to_string()))
        .chain(
            COUNTS
                .iter()
                .map(|(row, name, count)| (*row, *name, count.to_string())),
        );
    for (row, name, range) in ranges {
        let line = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{row}")))
            .unwrap_or_else(|| panic!("README.md has no key table row for `{row}`"));
        let shown = if name.is_empty() {
            range
        } else {
            format!("{name} {range}")
        };
        assert!(
            line.contains(&shown),
            "README.md's row for `{row}` must show {shown:?}:\n{line}"
        );
    }
}
