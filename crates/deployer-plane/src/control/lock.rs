//! One proxy per control socket: an exclusive lock on `<socket>.lock`, held for the
//! process's life, so a second proxy can never take over a socket a live one serves.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// The held lock; released when dropped (or when the process dies, however it dies).
#[derive(Debug)]
pub struct SocketLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("another proxy (pid {pid}) already serves {socket}")]
    Held {
        /// The socket.
        socket: String,
        /// The holder's pid, as it wrote it (`?` when unreadable).
        pid: String,
    },
    /// The lock file could not be opened or written.
    #[error("the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// What failed.
        source: io::Error,
    },
}

impl SocketLock {
    /// The lock file of `socket`.
    pub fn path_for(socket: &Path) -> PathBuf {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        PathBuf::from(path)
    }

    /// Takes the lock of `socket` without waiting, and writes this process's pid in it.
    pub fn acquire(socket: &Path) -> Result<SocketLock, LockError> {
        let path = Self::path_for(socket);
        let io_error = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        if let Err(errno) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    socket: socket.display().to_string(),
                    pid: if pid.is_empty() {
                        "?".into()
                    } else {
                        pid.into()
                    },
                });
            }
            return Err(io_error(errno.into()));
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        writeln!(file, "{}", std::process::id()).map_err(io_error)?;
        Ok(SocketLock { _file: file, path })
    }

    /// Where the lock lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("proxy.sock");
        let first = SocketLock::acquire(&socket).expect("first");
        let error = SocketLock::acquire(&socket).expect_err("second");
        let message = error.to_string();
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        SocketLock::acquire(&socket).expect("free again");
    }
}
