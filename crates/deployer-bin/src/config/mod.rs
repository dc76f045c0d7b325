//! The daemon's configuration: one TOML file plus flag and environment overrides, validated as
//! a whole before anything binds or connects. Every error names the file, line, column and key.

mod bounds;
mod client;
mod error;
mod locate;
mod overrides;
mod raw;
mod read;
mod secret;
mod settings;
mod validate;

#[cfg(test)]
mod docs_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use client::ClientConfig;
pub use error::{ConfigError, ConfigErrors};
pub use overrides::Overrides;
pub use raw::{LogFormat, ProxyMode};
#[cfg(test)]
pub use secret::MapEnv;
pub use secret::{EnvSource, ProcessEnv};
pub use settings::*;
pub use validate::DEFAULT_ADMIN_LISTEN;
pub use validate::DEFAULT_JOURNAL;
#[cfg(test)]
pub use validate::DEFAULT_WEBHOOK_LISTEN;

/// Reads, overrides and validates `path`.
pub fn load(
    path: &Path,
    overrides: &Overrides,
    env: &dyn EnvSource,
) -> Result<Settings, ConfigErrors> {
    let (file, text) = read(path)?;
    parse(&file, &text, overrides, env)
}

/// The config file's name (for errors) and text; an unreadable file is a config error.
pub(crate) fn read(path: &Path) -> Result<(String, String), ConfigErrors> {
    let file = path.display().to_string();
    let text = read::read_capped(path, read::CONFIG_MAX).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            position: None,
            key: String::new(),
            problem: format!("cannot read the config file: {e}"),
        }])
    })?;
    Ok((file, text))
}

/// Parses, overrides and validates config text; `file` names it in errors.
pub fn parse(
    file: &str,
    text: &str,
    overrides: &Overrides,
    env: &dyn EnvSource,
) -> Result<Settings, ConfigErrors> {
    let source = locate::Source::new(text);
    let error = |key: String, position, problem: String| ConfigError {
        file: file.to_owned(),
        position,
        key,
        problem,
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        let position = e.span().map(|s| source.position(s.start));
        ConfigErrors(vec![error(String::new(), position, e.message().to_owned())])
    })?;
    let mut raw: raw::RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let position = e.inner().span().map(|s| source.position(s.start));
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigErrors(vec![error(key, position, e.inner().message().to_owned())])
    })?;
    let overridden = overrides.apply(&mut raw);
    let hostname = hostname();
    let mut settings = validate::validate(&raw, env, &hostname).map_err(|problems| {
        ConfigErrors(
            problems
                .into_iter()
                .map(
                    |(key, problem)| match overridden.iter().find(|(k, _)| key.starts_with(k)) {
                        Some((_, flag)) => error(key, None, format!("{problem} (set by {flag})")),
                        None => error(key.clone(), source.locate(&key), problem),
                    },
                )
                .collect(),
        )
    })?;
    for warning in &mut settings.warnings {
        warning.file = file.to_owned();
        warning.position = source.locate(&warning.key);
    }
    Ok(settings)
}

/// The machine's hostname, the default node name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
