//! The standalone proxy's control socket: the versioned protocol, its server, its client, and
//! the lock that keeps one proxy per socket.

pub mod client;
pub mod lock;
pub mod protocol;
pub mod server;
