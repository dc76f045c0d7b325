//! Every decoder on its fixtures, then on arbitrary bytes and mutated fixtures: no panic, and
//! every refusal is a value naming a field.

use deployer_core::Digest;
use deployer_http::hooks::{Build, DecodeContext, Sender, decode};
use proptest::prelude::*;
use serde_json::Value;

use crate::common::{DIGEST, fixture};

/// Fixtures by sender, with the event header they come with.
const FIXTURES: &[(Sender, Option<&str>, &str)] = &[
    (Sender::DockerHub, None, "dockerhub_push.json"),
    (Sender::DockerHub, None, "dockerhub_push_float_time.json"),
    (Sender::Registry, None, "registry_push_reference.json"),
    (Sender::Registry, None, "registry_index_push.json"),
    (Sender::Registry, None, "registry/envelope_01.json"),
    (Sender::Registry, None, "registry/envelope_05.json"),
    (Sender::Registry, None, "registry/envelope_06.json"),
    (
        Sender::GitHub,
        Some("package"),
        "github_package_published.json",
    ),
    (
        Sender::GitHub,
        Some("registry_package"),
        "github_registry_package_updated.json",
    ),
    (
        Sender::GitHub,
        Some("package"),
        "github_package_digest_only.json",
    ),
    (Sender::GitHub, Some("package"), "github_package_npm.json"),
    (Sender::GitHub, Some("ping"), "github_ping.json"),
    (Sender::Quay, None, "quay_repo_push.json"),
    (Sender::Quay, None, "quay_repo_push_legacy.json"),
    (Sender::Harbor, None, "harbor_push_artifact.json"),
    (Sender::Harbor, None, "harbor_pull_artifact.json"),
    (Sender::Generic, None, "generic.json"),
    (Sender::Generic, None, "generic_digest.json"),
];

fn decoded(sender: Sender, event: Option<&str>, name: &str) -> Vec<Build> {
    decode(sender, &fixture(name), &DecodeContext::new(event, None))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn names(builds: &[Build]) -> Vec<String> {
    builds.iter().map(|b| b.image.to_string()).collect()
}

#[test]
fn fixtures_decode_to_what_they_announce() {
    let expected: &[(&str, &[&str])] = &[
        (
            "dockerhub_push.json",
            &["docker.io/svendowideit/testhook:latest"],
        ),
        (
            "dockerhub_push_float_time.json",
            &["docker.io/svendowideit/testhook:v1.2"],
        ),
        (
            "registry_push_reference.json",
            &["127.0.0.1:5000/demo/app:latest"],
        ),
        ("registry_index_push.json", &["reg.example.com/team/api:v2"]),
        ("registry/envelope_01.json", &[]),
        (
            "registry/envelope_05.json",
            &["127.0.0.1:45998/demo/app:latest"],
        ),
        ("registry/envelope_06.json", &[]),
        (
            "github_package_published.json",
            &["ghcr.io/octo-org/hello_docker:latest"],
        ),
        (
            "github_registry_package_updated.json",
            &["ghcr.io/octo-org/hello_docker:v1.4.0"],
        ),
        ("github_package_digest_only.json", &[]),
        ("github_package_npm.json", &[]),
        ("github_ping.json", &[]),
        (
            "quay_repo_push.json",
            &[
                "quay.io/mynamespace/repository:latest",
                "quay.io/mynamespace/repository:v1.0",
            ],
        ),
        (
            "quay_repo_push_legacy.json",
            &["quay.io/mynamespace/repository:latest"],
        ),
        (
            "harbor_push_artifact.json",
            &["hub.example.com/ns/debian:latest"],
        ),
        ("harbor_pull_artifact.json", &[]),
        ("generic.json", &["127.0.0.1:5000/demo/app:latest"]),
        ("generic_digest.json", &["127.0.0.1:5000/demo/app:latest"]),
    ];
    for (sender, event, name) in FIXTURES {
        let want = expected
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, w)| *w)
            .unwrap();
        assert_eq!(names(&decoded(*sender, *event, name)), want, "{name}");
    }
    let reference = &decoded(Sender::Registry, None, "registry_push_reference.json")[0];
    assert_eq!(reference.digest.as_ref().map(Digest::as_str), Some(DIGEST));
    assert_eq!(
        reference.event_time.map(|t| t.to_string()).as_deref(),
        Some("2026-11-22T20:25:17.040Z")
    );
    let index = &decoded(Sender::Registry, None, "registry_index_push.json")[0];
    assert_eq!(
        index.digest.as_ref().map(Digest::as_str),
        Some(DIGEST),
        "the index, not a child manifest"
    );
}

#[test]
fn event_ids_and_times_are_taken_where_the_sender_gives_them() {
    let reference = &decoded(Sender::Registry, None, "registry_push_reference.json")[0];
    assert_eq!(
        reference.event_id.as_deref(),
        Some("89df7a2b-5ba4-4a5b-9d4c-0e7a0c6f1c1e"),
        "a registry event's id tells a redelivery from a new push"
    );
    let ctx = DecodeContext::new(None, None);
    let body = br#"{"image": "127.0.0.1:5000/demo/app:latest", "id": "ci-run-41", "time": "2026-11-22T20:25:17Z"}"#;
    let generic = &decode(Sender::Generic, body, &ctx).unwrap()[0];
    assert_eq!(generic.event_id.as_deref(), Some("ci-run-41"));
    assert_eq!(
        generic.event_time.map(|t| t.to_string()).as_deref(),
        Some("2026-11-22T20:25:17.000Z")
    );
    let bad = br#"{"image": "127.0.0.1:5000/demo/app:latest", "time": "yesterday"}"#;
    let e = decode(Sender::Generic, bad, &ctx).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.problem.as_str()),
        ("time", "not an RFC 3339 time")
    );
}

#[test]
fn the_registry_name_override_applies_where_a_host_is_reported() {
    let ctx = DecodeContext::new(None, Some("registry.internal:5000"));
    let cases = [
        (
            Sender::Registry,
            "registry_push_reference.json",
            "registry.internal:5000/demo/app:latest",
        ),
        (
            Sender::Harbor,
            "harbor_push_artifact.json",
            "registry.internal:5000/ns/debian:latest",
        ),
        (
            Sender::Quay,
            "quay_repo_push_legacy.json",
            "registry.internal:5000/mynamespace/repository:latest",
        ),
    ];
    for (sender, name, want) in cases {
        let builds = decode(sender, &fixture(name), &ctx).unwrap();
        assert_eq!(names(&builds), [want], "{name}");
    }
}

/// Replaces the JSON value at a pseudo-random position of `doc` with `replacement`.
fn mutate(doc: &mut Value, mut pick: usize, replacement: &Value) {
    fn walk(v: &mut Value, pick: &mut usize, replacement: &Value) -> bool {
        if *pick == 0 {
            *v = replacement.clone();
            return true;
        }
        *pick -= 1;
        match v {
            Value::Object(map) => map.values_mut().any(|c| walk(c, pick, replacement)),
            Value::Array(items) => items.iter_mut().any(|c| walk(c, pick, replacement)),
            _ => false,
        }
    }
    let nodes = count(doc);
    pick %= nodes.max(1);
    walk(doc, &mut pick, replacement);
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Object(map) => map.values().map(count).sum(),
        Value::Array(items) => items.iter().map(count).sum(),
        _ => 0,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("")),
        Just(Value::from("latest")),
        Just(Value::from("push")),
        Just(Value::from("sha256:")),
        Just(Value::from(DIGEST)),
        Just(Value::from(
            "application/vnd.docker.distribution.manifest.v2+json"
        )),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(sender: Sender, event: Option<&str>, body: &[u8]) -> Result<(), TestCaseError> {
    for registry in [None, Some("r.example.com")] {
        if let Err(e) = decode(sender, body, &DecodeContext::new(event, registry)) {
            prop_assert!(!e.field.is_empty() && !e.problem.is_empty(), "{e:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), which in 0..FIXTURES.len()) {
        let (sender, event, _) = FIXTURES[which];
        check(sender, event, &body)?;
    }

    #[test]
    fn damaged_fixtures_never_panic(which in 0..FIXTURES.len(), cut in any::<usize>(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)) {
        let (sender, event, name) = FIXTURES[which];
        let mut body = fixture(name);
        for (at, byte) in flips {
            let len = body.len();
            body[at % len] = byte;
        }
        let cut = cut % (body.len() + 1);
        check(sender, event, &body)?;
        check(sender, event, &body[..cut])?;
    }

    #[test]
    fn fixtures_with_a_value_replaced_never_panic(which in 0..FIXTURES.len(), picks in prop::collection::vec((any::<usize>(), any_json()), 1..4)) {
        let (sender, event, name) = FIXTURES[which];
        let mut doc: Value = serde_json::from_slice(&fixture(name)).unwrap();
        for (pick, replacement) in picks {
            mutate(&mut doc, pick, &replacement);
        }
        check(sender, event, &serde_json::to_vec(&doc).unwrap())?;
    }
}
