//! The CLI side of the admin API: requests, progress while a deploy runs, tables.

mod render;

use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

use crate::cli::{ClientArgs, WaitArgs};
use crate::config::{self, ProcessEnv};
use crate::exit::Exit;

/// A connection to a daemon's admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    json: bool,
}

impl Client {
    /// From flags, environment or a config file.
    pub fn new(args: &ClientArgs) -> Result<Self, Exit> {
        // A token from the environment often ends in a newline (`echo`, env files).
        let token = args.token.as_deref().map(|t| t.trim_end().to_owned());
        let (mut base, mut token) = (args.admin.clone(), token);
        if let Some(path) = &args.config {
            // Only `[admin]`: the daemon's other secrets are not in an operator's shell.
            let file = config::ClientConfig::load(path).map_err(Exit::config)?;
            base = base.or_else(|| Some(format!("http://{}", file.admin_listen)));
            if token.is_none() {
                token = file
                    .admin_token(&ProcessEnv)
                    .map_err(Exit::config)?
                    .map(|t| t.expose().to_owned());
            }
        }
        let base = base.unwrap_or_else(|| format!("http://{}", config::DEFAULT_ADMIN_LISTEN));
        let base = if base.contains("://") {
            base
        } else {
            format!("http://{base}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Exit::failure(anyhow!(e)))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
            json: args.json,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Exit> {
        // The admin API refuses a state-changing request that is not JSON, body or not (a
        // web page could send anything else cross-site); `{}` asks for nothing in particular.
        let body = match method {
            reqwest::Method::GET | reqwest::Method::HEAD => body,
            _ => Some(body.unwrap_or_else(|| json!({}))),
        };
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            // The chain says why (connection refused, timed out); reqwest's own message
            // only says that sending failed.
            Exit::unavailable(anyhow!(
                "cannot reach the deployer's admin API at {}: {}",
                self.base,
                deployer_core::driver::error_chain(&e)
            ))
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        Err(answer_error(status, &value))
    }

    /// `deployer pause|maintenance|resume SERVICE`: `action` is the route's last segment.
    pub async fn gate(&self, service: &str, action: &str, body: Value) -> Result<(), Exit> {
        let path = format!("/api/v1/services/{service}/{action}");
        let answer = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        if self.json {
            println!("{answer}");
        } else {
            println!("{service}: {}", answer["gate"].as_str().unwrap_or("?"));
        }
        Ok(())
    }

    /// `deployer reload`.
    pub async fn reload(&self) -> Result<(), Exit> {
        let summary = self
            .call(reqwest::Method::POST, "/api/v1/reload", None)
            .await?;
        if self.json {
            println!("{summary}");
            return Ok(());
        }
        let names = |key: &str| -> String {
            let list: Vec<&str> = summary[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if list.is_empty() {
                "-".to_owned()
            } else {
                list.join(", ")
            }
        };
        println!(
            "reloaded: added {}; changed {}; removed {}; unchanged {}",
            names("added"),
            names("changed"),
            names("removed"),
            summary["unchanged"].as_u64().unwrap_or_default()
        );
        Ok(())
    }

    /// `deployer status`.
    pub async fn status(&self) -> Result<(), Exit> {
        let services = self
            .call(reqwest::Method::GET, "/api/v1/services", None)
            .await?;
        let fleet = self
            .call(reqwest::Method::GET, "/api/v1/fleet", None)
            .await
            .ok();
        if self.json {
            println!(
                "{}",
                json!({ "services": services["services"], "fleet": fleet.as_ref().map(|f| &f["statuses"]) })
            );
            return Ok(());
        }
        print!("{}", render::services(&services["services"]));
        if let Some(fleet) = fleet {
            let statuses = &fleet["statuses"];
            let nodes: std::collections::BTreeSet<&str> = statuses
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["node"].as_str())
                .collect();
            if nodes.len() > 1 {
                println!();
                print!("{}", render::fleet(statuses));
            }
        }
        Ok(())
    }

    /// `deployer history`.
    pub async fn history(&self, service: Option<&str>, limit: usize) -> Result<(), Exit> {
        let mut path = format!("/api/v1/history?limit={limit}");
        if let Some(service) = service {
            path.push_str(&format!("&service={service}"));
        }
        let history = self.call(reqwest::Method::GET, &path, None).await?;
        if self.json {
            println!("{history}");
        } else {
            print!("{}", render::history(&history["reports"]));
        }
        Ok(())
    }

    /// `deployer deploy` and `deployer rollback`: publish, then follow the deploy.
    pub async fn deploy(
        &self,
        service: &str,
        image: Option<&str>,
        rollback: bool,
        wait: &WaitArgs,
    ) -> Result<(), Exit> {
        let (path, body) = if rollback {
            (format!("/api/v1/services/{service}/rollback"), None)
        } else {
            let body = match image {
                Some(i) if i.starts_with("sha256:") => Some(json!({ "digest": i })),
                Some(i) => Some(json!({ "image": i })),
                None => None,
            };
            (format!("/api/v1/services/{service}/deploy"), body)
        };
        let outcome = self.call(reqwest::Method::POST, &path, body).await?;
        let target = &outcome["target"];
        let digest = target["digest"].as_str().unwrap_or_default().to_owned();
        let revision = target["revision"].as_u64().unwrap_or_default();
        if !self.json {
            println!(
                "{service}: target {} ({}, revision {revision})",
                short(&digest),
                outcome["outcome"].as_str().unwrap_or("?")
            );
        }
        if wait.no_wait {
            if self.json {
                println!("{outcome}");
            }
            return Ok(());
        }
        self.follow(service, &digest, revision, wait.timeout).await
    }

    /// Polls the service until the deploy of `revision` ends, printing each state change.
    async fn follow(
        &self,
        service: &str,
        digest: &str,
        revision: u64,
        timeout: Duration,
    ) -> Result<(), Exit> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_state = String::new();
        let started = std::time::Instant::now();
        loop {
            let view = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/services/{service}"),
                    None,
                )
                .await?;
            let state = view["state"].as_str().unwrap_or("?").to_owned();
            if state != last_state && !self.json {
                // A halt or a backoff says why in the message; without it the wait looks hung.
                let message = view["message"]
                    .as_str()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                println!(
                    "  {:>6.1}s  {state}{message}",
                    started.elapsed().as_secs_f32()
                );
                last_state.clone_from(&state);
            }
            let report = &view["last_report"];
            let reported = report["revision"].as_u64().is_some_and(|r| r >= revision)
                && report["to"].as_str() == Some(digest);
            let live = view["live"].as_str() == Some(digest);
            let at_rest = matches!(state.as_str(), "idle" | "halted");
            if (reported || (live && at_rest)) && !state_is_busy(&state) {
                let outcome = if reported {
                    report["outcome"].as_str().unwrap_or("?")
                } else {
                    "already_current"
                };
                if self.json {
                    println!(
                        "{}",
                        json!({ "service": service, "outcome": outcome, "live": view["live"], "report": report })
                    );
                } else {
                    println!(
                        "{}",
                        render::deploy_end(service, outcome, &view["live"], report)
                    );
                }
                return match outcome {
                    "succeeded" | "already_current" => Ok(()),
                    other => Err(Exit::deploy_failed(match render::why(report) {
                        Some(why) => anyhow!("the deploy ended {other}: {why}"),
                        None => anyhow!("the deploy ended {other}"),
                    })),
                };
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Exit::failure(anyhow!(
                    "still {state} after {timeout:?}; it goes on in the daemon"
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// An error answer of the admin API as an exit: 64 only for what the user can fix on the
/// command line, 69 when something the deployer needs cannot be reached, 1 for the rest. The
/// API's own message is printed: it names the image and the cause.
fn answer_error(status: reqwest::StatusCode, body: &Value) -> Exit {
    use deployer_http::admin::codes;
    let message = body.get("error").and_then(Value::as_str);
    let code = body.get("code").and_then(Value::as_str);
    let error = match message {
        Some(message) => anyhow!("{message}"),
        None => anyhow!("admin API answered {status}: {body}"),
    };
    match (status.as_u16(), code) {
        (401, _) => Exit::usage(anyhow!(
            "the admin API refused the token (401): pass --token or set DEPLOYER_ADMIN_TOKEN"
        )),
        // A bad --image, --limit or --service.
        (400, _) => Exit::usage(error),
        // A wrong --admin name: the message says to add it to admin.hosts.
        (403, Some(codes::HOST_NOT_ALLOWED | codes::ORIGIN_NOT_ALLOWED)) => Exit::usage(error),
        // The registry lacks the image: nothing the CLI was told is malformed.
        (404, Some(codes::IMAGE_NOT_FOUND)) => Exit::failure(error),
        // An unknown service, or a path this daemon does not serve (a wrong --admin).
        (404, _) => Exit::usage(error),
        (503, _) => Exit::unavailable(error),
        _ => Exit::failure(error),
    }
}

fn state_is_busy(state: &str) -> bool {
    !matches!(state, "idle" | "halted" | "backoff" | "stopped")
}

/// The first 12 hex digits of a digest, as people read them.
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use serde_json::json;

    use super::answer_error;

    fn exit(status: u16, body: &serde_json::Value) -> (u8, String) {
        let exit = answer_error(StatusCode::from_u16(status).expect("status"), body);
        (exit.code, exit.to_string())
    }

    #[test]
    fn error_answers_map_to_exit_codes_by_cause_and_keep_the_apis_message() {
        let image = "registry.example.com/team/web:v9";
        let cases = [
            // (status, code, exit code)
            (404, Some("unknown_service"), 64),
            (404, None, 64),
            (400, Some("wrong_repository"), 64),
            (400, None, 64),
            (404, Some("image_not_found"), 1),
            (403, Some("image_unauthorized"), 1),
            (403, Some("host_not_allowed"), 64),
            (409, Some("nothing_to_roll_back"), 1),
            (502, Some("build_failed"), 1),
            (500, None, 1),
            (503, Some("registry_unreachable"), 69),
            (503, Some("engine_unreachable"), 69),
            (503, Some("coordinator_unavailable"), 69),
        ];
        for (status, code, expected) in cases {
            let message = format!("about {image} ({status})");
            let mut body = json!({ "error": message });
            if let Some(code) = code {
                body["code"] = code.into();
            }
            let (got, printed) = exit(status, &body);
            assert_eq!(got, expected, "{status} {code:?}");
            assert_eq!(printed, message, "{status} {code:?}");
            assert!(!printed.contains("see the deployer's log"));
        }
    }

    #[test]
    fn token_refusals_and_bodies_that_are_not_errors() {
        let (code, printed) = exit(401, &json!({ "error": "authentication required" }));
        assert_eq!(code, 64);
        assert!(printed.contains("--token"), "{printed}");
        let (code, printed) = exit(502, &json!("Bad Gateway from a proxy in between"));
        assert_eq!(code, 1);
        assert_eq!(
            printed,
            "admin API answered 502 Bad Gateway: \"Bad Gateway from a proxy in between\""
        );
    }
}
