//! The data plane of deployer: every handover service's proxy, behind one port
//! ([`DataPlane`]) that the Docker switcher drives.
//!
//! - [`Fleet`] runs the proxies in this process. With a [`StateFile`] it saves every route,
//!   backend and gate after each change, and [`Fleet::restore`] serves them again before
//!   anything else can change them.
//! - `deployer proxy run` is a [`Fleet`] restored from its state file and served on a unix
//!   control socket ([`ControlServer`], a JSON protocol, version 1, in [`control::protocol`]):
//!   a process of its own, so the daemon can restart, crash or upgrade while traffic flows.
//! - [`ControlClient`] is the same [`DataPlane`] over that socket.
#![warn(missing_docs)]

pub mod control;
mod fleet;
pub mod handoff;
mod plane;
mod route;
mod state;

pub use control::client::ControlClient;
pub use control::lock::{LockError, SocketLock};
pub use control::server::{ControlServer, Upgrader};
pub use fleet::Fleet;
pub use plane::{DataPlane, PlaneError, RouteChange, RouteSet, ServiceStats, Swapped};
pub use route::{Gate, Route, RouteBackend, RouteInfo, RouteSplit, RouteTls};
pub use state::{Loaded, SavedRoute, SavedState, StateFile};
