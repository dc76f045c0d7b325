//! `ImageRef` against real-world references, the way `docker pull` reads them.

use deployer_core::image::{ImageRef, ReferenceProblem};

const HEX: &str = "74f9ca9aa780491d0401ce76b5c1c41b3109741abdbf06ccc096ebd5fbd5fa0f";

/// (input, registry, repository, tag, has a digest, canonical form, familiar form)
type Case = (
    String,
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
    String,
    String,
);

#[test]
fn normalises_valid_references_like_docker() {
    let d = format!("sha256:{HEX}");
    // (input, registry, repository, tag, digest?, canonical, familiar)
    let cases: Vec<Case> = vec![
        (
            "nginx".into(),
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest".into(),
            "nginx:latest".into(),
        ),
        (
            "nginx:1.25-alpine".into(),
            "docker.io",
            "library/nginx",
            Some("1.25-alpine"),
            false,
            "docker.io/library/nginx:1.25-alpine".into(),
            "nginx:1.25-alpine".into(),
        ),
        (
            "library/redis:7".into(),
            "docker.io",
            "library/redis",
            Some("7"),
            false,
            "docker.io/library/redis:7".into(),
            "redis:7".into(),
        ),
        (
            "svendowideit/testhook".into(),
            "docker.io",
            "svendowideit/testhook",
            Some("latest"),
            false,
            "docker.io/svendowideit/testhook:latest".into(),
            "svendowideit/testhook:latest".into(),
        ),
        (
            "docker.io/nginx".into(),
            "docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest".into(),
            "nginx:latest".into(),
        ),
        (
            "index.docker.io/library/ubuntu:22.04".into(),
            "docker.io",
            "library/ubuntu",
            Some("22.04"),
            false,
            "docker.io/library/ubuntu:22.04".into(),
            "ubuntu:22.04".into(),
        ),
        (
            "ghcr.io/owner/app:v1.2.3".into(),
            "ghcr.io",
            "owner/app",
            Some("v1.2.3"),
            false,
            "ghcr.io/owner/app:v1.2.3".into(),
            "ghcr.io/owner/app:v1.2.3".into(),
        ),
        (
            "quay.io/coreos/etcd:v3.5.9".into(),
            "quay.io",
            "coreos/etcd",
            Some("v3.5.9"),
            false,
            "quay.io/coreos/etcd:v3.5.9".into(),
            "quay.io/coreos/etcd:v3.5.9".into(),
        ),
        (
            "localhost:5000/demo/app".into(),
            "localhost:5000",
            "demo/app",
            Some("latest"),
            false,
            "localhost:5000/demo/app:latest".into(),
            "localhost:5000/demo/app:latest".into(),
        ),
        (
            "localhost/app".into(),
            "localhost",
            "app",
            Some("latest"),
            false,
            "localhost/app:latest".into(),
            "localhost/app:latest".into(),
        ),
        (
            "127.0.0.1:5000/demo/app:v2".into(),
            "127.0.0.1:5000",
            "demo/app",
            Some("v2"),
            false,
            "127.0.0.1:5000/demo/app:v2".into(),
            "127.0.0.1:5000/demo/app:v2".into(),
        ),
        (
            "[::1]:5000/demo/app".into(),
            "[::1]:5000",
            "demo/app",
            Some("latest"),
            false,
            "[::1]:5000/demo/app:latest".into(),
            "[::1]:5000/demo/app:latest".into(),
        ),
        (
            "registry.example.com:443/a/b/c/d:tag_1".into(),
            "registry.example.com:443",
            "a/b/c/d",
            Some("tag_1"),
            false,
            "registry.example.com:443/a/b/c/d:tag_1".into(),
            "registry.example.com:443/a/b/c/d:tag_1".into(),
        ),
        (
            "hub.example.com/ns/debian:latest".into(),
            "hub.example.com",
            "ns/debian",
            Some("latest"),
            false,
            "hub.example.com/ns/debian:latest".into(),
            "hub.example.com/ns/debian:latest".into(),
        ),
        (
            "my-registry.local/my_team/web-app__v2".into(),
            "my-registry.local",
            "my_team/web-app__v2",
            Some("latest"),
            false,
            "my-registry.local/my_team/web-app__v2:latest".into(),
            "my-registry.local/my_team/web-app__v2:latest".into(),
        ),
        (
            "Registry.Example.com/app".into(),
            "Registry.Example.com",
            "app",
            Some("latest"),
            false,
            "Registry.Example.com/app:latest".into(),
            "Registry.Example.com/app:latest".into(),
        ),
        (
            format!("nginx@{d}"),
            "docker.io",
            "library/nginx",
            None,
            true,
            format!("docker.io/library/nginx@{d}"),
            format!("nginx@{d}"),
        ),
        (
            format!("ghcr.io/o/app:v1@{d}"),
            "ghcr.io",
            "o/app",
            Some("v1"),
            true,
            format!("ghcr.io/o/app:v1@{d}"),
            format!("ghcr.io/o/app:v1@{d}"),
        ),
        (
            "a.b-c--d.e_f".into(),
            "docker.io",
            "library/a.b-c--d.e_f",
            Some("latest"),
            false,
            "docker.io/library/a.b-c--d.e_f:latest".into(),
            "a.b-c--d.e_f:latest".into(),
        ),
    ];
    for (input, registry, repository, tag, has_digest, canonical, familiar) in cases {
        let image = ImageRef::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(image.registry(), registry, "{input}");
        assert_eq!(image.repository(), repository, "{input}");
        assert_eq!(image.tag(), tag, "{input}");
        assert_eq!(image.digest().is_some(), has_digest, "{input}");
        assert_eq!(image.to_string(), canonical, "{input}");
        assert_eq!(image.familiar(), familiar, "{input}");
        let again = ImageRef::parse(&image.to_string()).unwrap();
        assert_eq!(again, image, "Display round-trips for {input}");
    }
}

#[test]
fn rejects_invalid_references_naming_the_problem() {
    let long_name = format!("{}/x", "a".repeat(260));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "it is empty"),
        (":latest".into(), "it is empty"),
        ("Nginx".into(), "must be lowercase"),
        ("docker.io/Library/nginx".into(), "must be lowercase"),
        ("ghcr.io/Owner/App".into(), "must be lowercase"),
        (HEX.into(), "image ID"),
        ("nginx:".into(), "tag \"\""),
        ("nginx:-bad".into(), "tag \"-bad\""),
        ("nginx:.bad".into(), "tag \".bad\""),
        (format!("nginx:{}", "t".repeat(129)), "tag"),
        ("nginx:a b".into(), "tag"),
        ("-nginx".into(), "path component \"-nginx\""),
        ("nginx-".into(), "path component \"nginx-\""),
        ("ngi..nx".into(), "path component"),
        ("ngi___nx".into(), "path component"),
        ("a//b".into(), "path component \"\""),
        ("exa_mple.com/app".into(), "registry \"exa_mple.com\""),
        ("-host.com/app".into(), "registry \"-host.com\""),
        ("host.com:port/app".into(), "registry \"host.com:port\""),
        ("[zz::1]:5000/app".into(), "registry"),
        ("nginx@sha256:abc".into(), "needs 64 hex digits"),
        (
            "nginx@md5:d41d8cd98f00b204e9800998ecf8427e".into(),
            "unsupported algorithm",
        ),
        ("nginx@latest".into(), "expected algorithm:hex"),
        (long_name, "the limit is 255"),
    ];
    for (input, expected) in cases {
        let err = ImageRef::parse(&input).expect_err(&input);
        let message = err.to_string();
        assert!(message.contains(expected), "{input:?}: {message}");
        assert!(message.starts_with("invalid image reference"), "{message}");
        assert_eq!(err.input, input);
    }
}

#[test]
fn tracking_helpers() {
    let image = ImageRef::parse(&format!("ghcr.io/o/app:v1@sha256:{HEX}")).unwrap();
    assert_eq!(image.without_digest().to_string(), "ghcr.io/o/app:v1");
    let digest_only = ImageRef::parse(&format!("ghcr.io/o/app@sha256:{HEX}")).unwrap();
    assert_eq!(
        digest_only.without_digest().to_string(),
        "ghcr.io/o/app:latest"
    );
    assert!(image.same_repository(&ImageRef::parse("ghcr.io/o/app:v9").unwrap()));
    assert!(!image.same_repository(&ImageRef::parse("ghcr.io/o/other:v1").unwrap()));
    let retagged = image.with_tag("v2").unwrap();
    assert_eq!(retagged.to_string(), "ghcr.io/o/app:v2");
    let err = image.with_tag("-x").unwrap_err();
    assert!(matches!(err.problem, ReferenceProblem::Tag(_)), "{err}");
}

#[test]
fn serde_is_the_canonical_string() {
    let image = ImageRef::parse("nginx").unwrap();
    let json = serde_json::to_string(&image).unwrap();
    assert_eq!(json, "\"docker.io/library/nginx:latest\"");
    let back: ImageRef = serde_json::from_str("\"nginx\"").unwrap();
    assert_eq!(back, image);
    let bad = serde_json::from_str::<ImageRef>("\"Nginx\"").unwrap_err();
    assert!(bad.to_string().contains("must be lowercase"), "{bad}");
}
