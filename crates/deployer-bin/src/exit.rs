//! Exit codes, as `sysexits.h` names them, so scripts and supervisors can tell failures apart.

use std::fmt;

/// Why the process ends, and with which code.
#[derive(Debug)]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What to print on stderr.
    pub error: anyhow::Error,
}

impl Exit {
    /// 64 (EX_USAGE): bad config, flags or input.
    pub fn usage(error: anyhow::Error) -> Self {
        Self { code: 64, error }
    }

    /// 64 with the config errors listed.
    pub fn config(errors: crate::config::ConfigErrors) -> Self {
        Self::usage(anyhow::Error::new(errors))
    }

    /// 69 (EX_UNAVAILABLE): Docker, etcd or the admin API cannot be reached.
    pub fn unavailable(error: anyhow::Error) -> Self {
        Self { code: 69, error }
    }

    /// 69 for a resource the config names (a listen address in use, a journal that cannot
    /// be opened): the message names the key and its value, so the operator knows what to fix.
    pub fn unavailable_at(
        key: &str,
        value: impl fmt::Display,
        error: &dyn std::error::Error,
    ) -> Self {
        Self::unavailable(anyhow::anyhow!(
            "{key} = {value}: {}",
            deployer_core::driver::error_chain(error)
        ))
    }

    /// 2: a deploy ran and did not succeed (rolled back, failed, skipped).
    pub fn deploy_failed(error: anyhow::Error) -> Self {
        Self { code: 2, error }
    }

    /// 1: anything else.
    pub fn failure(error: anyhow::Error) -> Self {
        Self { code: 1, error }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}
