//! The descriptor soft limit, raised to the hard limit at start: the proxy's connections,
//! the webhook and admin servers' and the engine's all come out of one budget, and the usual
//! soft limit of 1,024 is what an idle-connection flood used to exhaust.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit of open files to the hard limit; returns the limit now in force.
pub fn raise() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let Rlimit {
        current: Some(current),
        maximum,
    } = limit
    else {
        return None; // already unlimited
    };
    let Some(maximum) = maximum else {
        // "Unlimited" hard limit: the kernel still caps it at nr_open; ask for a generous
        // amount rather than infinity, which setrlimit refuses for files.
        return try_set(current, 1 << 20);
    };
    if current >= maximum {
        return Some(current);
    }
    try_set(current, maximum)
}

fn try_set(current: u64, wanted: u64) -> Option<u64> {
    let raised = Rlimit {
        current: Some(wanted),
        maximum: getrlimit(Resource::Nofile).maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(wanted),
        Err(error) => {
            tracing::warn!(%error, current, wanted, "cannot raise the open-files limit");
            Some(current)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let now = super::raise().expect("a finite limit");
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, Some(now));
        if let Some(hard) = limit.maximum {
            assert_eq!(now, hard);
        }
    }
}
