//! The routing state on disk: written after every change (temp file, fsync, rename, fsync of
//! the directory) so a restarted proxy serves what the old one served before it listens.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::route::{Gate, Route, RouteBackend};

/// The format version; a file of another version is set aside like a corrupt one.
const VERSION: u32 = 1;

/// Everything a restarted proxy needs to serve as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    /// Always [`VERSION`].
    pub version: u32,
    /// By service.
    pub routes: BTreeMap<String, SavedRoute>,
}

/// One route as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedRoute {
    /// Its settings.
    pub route: Route,
    /// Its live backends.
    pub backends: Vec<RouteBackend>,
    /// What new requests meet.
    #[serde(default)]
    pub gate: Gate,
    /// A canary split in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<crate::route::RouteSplit>,
}

/// What [`StateFile::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet: start empty.
    Fresh,
    /// The saved routes.
    Restored(SavedState),
    /// The file could not be read as a state: it was moved to `kept_at`, start empty
    /// rather than guess.
    Corrupt {
        /// Where the unreadable file now is.
        kept_at: PathBuf,
        /// Why it was unreadable.
        reason: String,
    },
}

/// The state file at one path.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path` (created at the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the saved state; an unreadable file is moved aside (never deleted: an operator
    /// may want it) and reported.
    pub fn load(&self) -> io::Result<Loaded> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Fresh),
            Err(error) => return Err(error),
        };
        let reason = match serde_json::from_slice::<SavedState>(&bytes) {
            Ok(state) if state.version == VERSION => return Ok(Loaded::Restored(state)),
            Ok(state) => format!("version {} is not {VERSION}", state.version),
            Err(error) => error.to_string(),
        };
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut kept_at = self.path.clone().into_os_string();
        kept_at.push(format!(".corrupt-{stamp}"));
        let kept_at = PathBuf::from(kept_at);
        fs::rename(&self.path, &kept_at)?;
        Ok(Loaded::Corrupt { kept_at, reason })
    }

    /// Replaces the file with `state`, atomically and durably.
    pub fn save(&self, routes: BTreeMap<String, SavedRoute>) -> io::Result<()> {
        let state = SavedState {
            version: VERSION,
            routes,
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
        let mut temp = self.path.clone().into_os_string();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        {
            let mut file = fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        fs::rename(&temp, &self.path)?;
        // The rename itself is durable only once the directory is.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_route() -> BTreeMap<String, SavedRoute> {
        let route = Route::http("127.0.0.1:8080".parse().expect("addr"));
        let backend = RouteBackend::new("127.0.0.1:9000".parse().expect("addr"), "g1");
        BTreeMap::from([(
            "web".to_owned(),
            SavedRoute {
                route,
                backends: vec![backend],
                gate: Gate::Open,
                split: None,
            },
        )])
    }

    #[test]
    fn saved_routes_load_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = StateFile::new(dir.path().join("state.json"));
        assert!(matches!(file.load().expect("load"), Loaded::Fresh));
        file.save(one_route()).expect("save");
        let Loaded::Restored(state) = file.load().expect("load") else {
            panic!("not restored");
        };
        assert_eq!(state.routes, one_route());
    }

    #[test]
    fn a_corrupt_file_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"version\":1,\"routes\":{\"web\":").expect("write");
        let file = StateFile::new(&path);
        let Loaded::Corrupt { kept_at, reason } = file.load().expect("load") else {
            panic!("not reported as corrupt");
        };
        assert!(reason.contains("EOF"), "{reason}");
        assert!(!path.exists());
        assert_eq!(
            fs::read(&kept_at).expect("kept"),
            b"{\"version\":1,\"routes\":{\"web\":"
        );
        // The next start is a fresh one.
        assert!(matches!(file.load().expect("load"), Loaded::Fresh));
    }

    #[test]
    fn another_version_is_not_guessed_at() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        fs::write(&path, br#"{"version":2,"routes":{}}"#).expect("write");
        let loaded = StateFile::new(&path).load().expect("load");
        assert!(
            matches!(loaded, Loaded::Corrupt { ref reason, .. } if reason.contains("version 2"))
        );
    }
}
