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
        let (mut base, mut token) = (args.admin.clone(), args.token.clone());
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
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        Err(match status.as_u16() {
            401 => Exit::usage(anyhow!(
                "the admin API refused the token (401): pass --token or set DEPLOYER_ADMIN_TOKEN"
            )),
            400 | 404 | 409 => Exit::usage(anyhow!("{message}")),
            _ => Exit::failure(anyhow!("admin API answered {status}: {message}")),
        })
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

fn state_is_busy(state: &str) -> bool {
    !matches!(state, "idle" | "halted" | "backoff" | "stopped")
}

/// The first 12 hex digits of a digest, as people read them.
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}
