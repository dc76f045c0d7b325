//! The daemon's log output: readable by default, JSON on request; `RUST_LOG` filters.

use std::io::IsTerminal;

use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{EnvSource, LogFormat, ProcessEnv};

/// Installs the global subscriber (once, at start).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(&ProcessEnv, std::io::stderr().is_terminal());
    // Already installed (tests run several daemons in one process): keep the first.
    let _ = subscriber(format, filter, ansi, std::io::stderr).try_init();
}

/// Colour codes help a person at a terminal; in a file, a pipe or journald they are noise
/// that breaks grep. `NO_COLOR` (no-color.org) turns them off when set to anything non-empty.
fn colour(env: &dyn EnvSource, stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && env.var("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn subscriber<W>(format: LogFormat, filter: EnvFilter, ansi: bool, writer: W) -> Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_target(false).finish().into(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .finish()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;
    use crate::config::MapEnv;

    fn env(vars: &[(&str, &str)]) -> MapEnv {
        MapEnv::of(vars)
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(&env(&[]), true));
        assert!(!colour(&env(&[]), false), "stderr is a file or a pipe");
        assert!(!colour(&env(&[("NO_COLOR", "1")]), true));
        assert!(!colour(&env(&[("NO_COLOR", "1")]), false));
        // no-color.org: an empty value does not count.
        assert!(colour(&env(&[("NO_COLOR", "")]), true));
    }

    /// A writer into a shared buffer, standing in for stderr.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(ansi: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let dispatch = subscriber(LogFormat::Text, EnvFilter::new("info"), ansi, move || {
            writer.clone()
        });
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("deploy", service = "web");
            let _entered = span.enter();
            tracing::warn!(image = "demo/app:latest", "candidate unhealthy");
        });
        let bytes = buffer.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn text_logs_to_a_file_carry_no_escape_codes() {
        let plain = logged(colour(&env(&[]), false));
        assert!(plain.contains("WARN"), "{plain:?}");
        assert!(plain.contains("deploy{service=\"web\"}"), "{plain:?}");
        assert!(plain.contains("candidate unhealthy"), "{plain:?}");
        assert!(!plain.contains('\x1b'), "{plain:?}");
        // The switch is what decides: with colour on, the same line is coloured.
        assert!(logged(true).contains('\x1b'));
    }
}
