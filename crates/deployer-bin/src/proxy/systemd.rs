//! Tells systemd (a `Type=notify` unit with `NotifyAccess=all`) that the proxy serves, and which
//! process is now the service's main one: after `deployer proxy upgrade` that is the new
//! process, so systemd neither kills it nor restarts the unit when the old one exits.

use std::os::unix::net::UnixDatagram;

/// Sends `READY=1` and `MAINPID=<this process>` to `$NOTIFY_SOCKET`; nothing without one.
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let path = path.to_string_lossy();
        match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)
            }
            None => socket.send_to(message.as_bytes(), &*path),
        }
    });
    if let Err(error) = sent {
        tracing::warn!(%error, "telling systemd the proxy is ready failed");
    }
}
