//! The repository's scripts promise to work on a fresh machine; these check what they install
//! against what the build needs.

use std::path::Path;

/// The packages a script hands to `scripts/install-deps.sh`.
fn installed_by(script: &str) -> anyhow::Result<Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(script))?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("scripts/install-deps.sh "))
        .flat_map(|packages| packages.split_whitespace().map(str::to_owned))
        .collect())
}

#[test]
fn the_demo_installs_protoc_which_the_etcd_client_build_needs() -> anyhow::Result<()> {
    // deployer-bin depends on deployer-etcd, whose etcd-client build script runs protoc: a
    // release build on a machine without it fails before the demo starts.
    let demo = installed_by("scripts/demo.sh")?;
    assert!(
        demo.iter().any(|p| p == "protobuf-compiler"),
        "scripts/demo.sh installs {demo:?}"
    );
    // Everything the demo runs itself, too.
    for needed in ["docker-registry", "busybox-static", "curl"] {
        assert!(
            demo.iter().any(|p| p == needed),
            "{needed} missing: {demo:?}"
        );
    }
    Ok(())
}
