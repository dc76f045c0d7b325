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

/// `deployer status`.
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
                format!(
                    "{}x{}",
                    text(&s["strategy"]),
                    s["replicas"].as_u64().unwrap_or(1)
                ),
                text(&s["image"]),
                last,
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
            "IMAGE",
            "LAST DEPLOY",
        ],
        rows,
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
            ]
        })
        .collect();
    table(
        &["SERVICE", "NODE", "STATE", "LIVE", "TARGET", "ENDPOINT"],
        rows,
    )
}

/// `deployer history`.
pub fn history(reports: &Value) -> String {
    let rows = items(reports)
        .map(|r| {
            let when = r["finished_at"].as_u64().map_or("-".to_owned(), |ms| {
                deployer_core::Timestamp::from_millis(ms).to_string()
            });
            vec![
                when,
                text(&r["service"]),
                text(&r["node"]),
                text(&r["outcome"]),
                format!("{} -> {}", digest(&r["from"]), digest(&r["to"])),
                r["duration_ms"]
                    .as_u64()
                    .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                text(&r["reason"]),
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

    #[test]
    fn renders_aligned_tables() {
        let out = super::services(&json!([{
            "name": "web", "state": "idle", "live": format!("sha256:{}", "ab".repeat(32)),
            "target": null, "generation": 3, "strategy": "handover", "replicas": 2,
            "image": "docker.io/demo/app:latest", "last_report": null
        }]));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE  STATE  LIVE          TARGET  GEN  STRATEGY    IMAGE                      LAST DEPLOY"
        );
        assert_eq!(
            lines[1],
            "web      idle   abababababab  -       g3   handoverx2  docker.io/demo/app:latest  -"
        );
    }
}
