//! Config text shared by the CLI and fleet tests: the one service both run, behind its proxy,
//! probed over HTTP. Each test writes its own global sections and timeouts around it.

use std::net::SocketAddr;
use std::time::Duration;

/// The `[[service]]` section: `name` tracking `image`, its containers labelled `labels` (the
/// test's sweep labels), its proxy on `proxy`, probed at `/health` every 100 ms until `deadline`.
pub fn service_section(
    name: &str,
    image: &str,
    labels: &[(String, String)],
    proxy: SocketAddr,
    deadline: Duration,
) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}"))
        .collect();
    format!(
        r#"[[service]]
name = "{name}"
image = "{image}"
labels = {{ {labels} }}

[service.proxy]
listen = "{proxy}"
container_port = {port}

[service.health]
kind = "http"
path = "/health"
interval = "100ms"
timeout = "1s"
deadline = "{deadline}ms"
# Short, so the scenarios stay quick, but every rollout goes through the watch.
watch = "500ms"
"#,
        labels = labels.join(", "),
        port = deployer_testkit::images::HTTP_PORT,
        deadline = deadline.as_millis(),
    )
}
