//! Plain-text tables for people.

use serde_json::Value;

use super::short;

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn digest(v: &Value) -> String {
    v.as_str()
        .map_or_else(|| "-".to_owned(), |d| short(d).to_owned())
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// `deployer status`. MESSAGE comes last: it is the one column of free text, and a long halt
/// reason there does not push the other columns out of line.
pub fn services(services: &Value) -> String {
    let rows = items(services)
        .map(|s| {
            let last = &s["last_report"];
            let last = if last.is_null() {
                "-".to_owned()
            } else {
                format!("{} {}", text(&last["outcome"]), digest(&last["to"]))
            };
            vec![
                text(&s["name"]),
                text(&s["state"]),
                digest(&s["live"]),
                digest(&s["target"]),
                s["generation"]
                    .as_u64()
                    .map_or("-".to_owned(), |g| format!("g{g}")),
                text(&s["strategy"]),
                s["replicas"].as_u64().unwrap_or(1).to_string(),
                text(&s["image"]),
                last,
                one_line(s["message"].as_str()),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "STATE",
            "LIVE",
            "TARGET",
            "GEN",
            "STRATEGY",
            "REPLICAS",
            "IMAGE",
            "LAST DEPLOY",
            "MESSAGE",
        ],
        rows,
    )
}

/// Free text squeezed onto one line, so a multi-line error cannot break a table row.
fn one_line(text: Option<&str>) -> String {
    match text.map(str::trim) {
        None | Some("") => "-".to_owned(),
        Some(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// Why a deploy did not succeed, and why putting things back failed too when it did: the
/// second is the one that needs a person, so it is never left to `--json` alone.
pub fn why(report: &Value) -> Option<String> {
    let reason = report["reason"].as_str().filter(|r| !r.is_empty());
    let rollback = report["rollback_error"]
        .as_str()
        .filter(|r| !r.is_empty())
        .map(|e| format!("rollback failed: {e}"));
    match (reason, rollback) {
        (Some(reason), Some(rollback)) => Some(format!("{reason}; {rollback}")),
        (reason, rollback) => rollback.or_else(|| reason.map(str::to_owned)),
    }
}

/// The line `deploy` and `rollback` end with.
pub fn deploy_end(service: &str, outcome: &str, live: &Value, report: &Value) -> String {
    let why = why(report).map(|w| format!(": {w}")).unwrap_or_default();
    format!(
        "{service}: {outcome}, live {}{why}",
        short(live.as_str().unwrap_or("none"))
    )
}

/// The fleet part of `deployer status`.
pub fn fleet(statuses: &Value) -> String {
    let rows = items(statuses)
        .map(|s| {
            vec![
                text(&s["service"]),
                text(&s["node"]),
                text(&s["state"]),
                digest(&s["live"]),
                digest(&s["target"]),
                text(&s["endpoint"]),
                // When the host wrote it: a stale row (a host cut off) shows its age.
                millis(&s["updated_at"]),
            ]
        })
        .collect();
    table(
        &[
            "SERVICE", "NODE", "STATE", "LIVE", "TARGET", "ENDPOINT", "WRITTEN",
        ],
        rows,
    )
}

/// A milliseconds-since-the-epoch field as RFC 3339, or `-`.
fn millis(value: &Value) -> String {
    value.as_u64().map_or("-".to_owned(), |ms| {
        deployer_core::Timestamp::from_millis(ms).to_string()
    })
}

/// `deployer history`.
pub fn history(reports: &Value) -> String {
    let rows = items(reports)
        .map(|r| {
            let when = millis(&r["finished_at"]);
            vec![
                when,
                text(&r["service"]),
                text(&r["node"]),
                text(&r["outcome"]),
                format!("{} -> {}", digest(&r["from"]), digest(&r["to"])),
                r["duration_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                one_line(why(r).as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "FINISHED",
            "SERVICE",
            "NODE",
            "OUTCOME",
            "FROM -> TO",
            "TOOK",
            "REASON",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn hex(byte: &str) -> String {
        format!("sha256:{}", byte.repeat(32))
    }

    #[test]
    fn the_fleet_table_shows_when_each_host_wrote_its_status() {
        let out = super::fleet(&json!([{
            "service": "web", "node": "b", "state": "idle", "live": hex("ab"),
            "target": hex("ab"), "endpoint": null, "updated_at": 1_417_566_161_042u64
        }]));
        let mut lines = out.lines();
        assert!(lines.next().unwrap().ends_with("WRITTEN"), "{out}");
        assert!(
            lines.next().unwrap().ends_with("2014-12-03T00:22:41.042Z"),
            "{out}"
        );
    }

    #[test]
    fn renders_aligned_tables() {
        let out = super::services(&json!([{
            "name": "web", "state": "idle", "live": hex("ab"),
            "target": null, "generation": 3, "strategy": "handover", "replicas": 2,
            "image": "docker.io/demo/app:latest", "message": null, "last_report": null
        }]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE  STATE  LIVE          TARGET  GEN  STRATEGY  REPLICAS  IMAGE                      LAST DEPLOY  MESSAGE"
        );
        assert_eq!(
            lines[1],
            "web      idle   abababababab  -       g3   handover  2         docker.io/demo/app:latest  -            -"
        );
    }

    #[test]
    fn the_status_message_is_the_last_column_on_one_line() {
        let out = super::services(&json!([
            {"name": "web", "state": "halted", "live": hex("ab"), "target": hex("cd"),
             "generation": 3, "strategy": "recreate", "replicas": 1, "image": "demo/app:latest",
             "message": "halted after a failed deploy:\n  candidate unhealthy",
             "last_report": {"outcome": "rolled_back", "to": hex("cd")}},
            {"name": "api", "state": "idle", "live": hex("ef"), "target": hex("ef"),
             "generation": 1, "strategy": "handover", "replicas": 3, "image": "demo/api:latest",
             "message": null, "last_report": null}
        ]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].ends_with("LAST DEPLOY               MESSAGE"),
            "{out}"
        );
        assert!(
            lines[1].ends_with(
                "recreate  1         demo/app:latest  rolled_back cdcdcdcdcdcd  halted after a failed deploy: candidate unhealthy"
            ),
            "{out}"
        );
        assert!(lines[2].contains("handover  3 "), "{out}");
        assert!(lines[2].ends_with("  -"), "{out}");
        assert!(!out.contains("handoverx"), "{out}");
    }

    #[test]
    fn a_failed_rollback_shows_in_history_and_at_the_end_of_a_deploy() {
        let failed = json!({
            "finished_at": 0, "service": "web", "node": "host-a", "outcome": "failed",
            "from": hex("ab"), "to": hex("cd"), "duration_ms": 1500,
            "reason": "candidate unhealthy", "rollback_error": "old container gone"
        });
        let plain = json!({
            "finished_at": 0, "service": "web", "node": "host-a", "outcome": "rolled_back",
            "from": hex("ab"), "to": hex("cd"), "duration_ms": 1500,
            "reason": "candidate unhealthy", "rollback_error": null
        });
        let out = super::history(&json!([failed, plain]));
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1].ends_with("1.5s  candidate unhealthy; rollback failed: old container gone"),
            "{out}"
        );
        assert!(lines[2].ends_with("1.5s  candidate unhealthy"), "{out}");

        assert_eq!(
            super::deploy_end("web", "failed", &json!(hex("ab")), &failed),
            "web: failed, live abababababab: candidate unhealthy; rollback failed: old container gone"
        );
        let no_reason = json!({"rollback_error": "old container gone"});
        assert_eq!(
            super::why(&no_reason).as_deref(),
            Some("rollback failed: old container gone")
        );
        assert_eq!(super::why(&json!({})), None);
    }
}
