//! Handing listening sockets to a new proxy process over a unix socket (`SCM_RIGHTS`): the
//! sockets themselves move, with the connections the kernel has queued on them, so an upgrade
//! of the proxy refuses no connection.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

/// The most sockets one handover carries (the kernel's limit per message is 253).
pub const MAX_LISTENERS: usize = 250;

/// The largest description of the routes sent beside the sockets.
const MAX_PAYLOAD: usize = 64 * 1024;

/// Sends every route's listening sockets: which service each belongs to as JSON, the sockets
/// as ancillary data, in the same order.
pub fn send_listeners(stream: &UnixStream, listeners: &[(String, Vec<OwnedFd>)]) -> io::Result<()> {
    let counts: Vec<(&str, usize)> = listeners
        .iter()
        .map(|(service, fds)| (service.as_str(), fds.len()))
        .collect();
    let fds: Vec<BorrowedFd<'_>> = listeners
        .iter()
        .flat_map(|(_, fds)| fds.iter().map(AsFd::as_fd))
        .collect();
    if fds.len() > MAX_LISTENERS {
        return Err(io::Error::other(format!(
            "{} listening sockets are more than one handover carries ({MAX_LISTENERS})",
            fds.len()
        )));
    }
    let payload = serde_json::to_vec(&counts).map_err(io::Error::other)?;
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other(
            "the sockets do not fit the control message",
        ));
    }
    let sent = sendmsg(
        stream,
        &[IoSlice::new(&payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    if sent != payload.len() {
        return Err(io::Error::other("the route list was sent in part"));
    }
    Ok(())
}

/// Receives what [`send_listeners`] sent: each service's listening sockets.
pub fn recv_listeners(stream: &UnixStream) -> io::Result<HashMap<String, Vec<TcpListener>>> {
    let mut payload = vec![0u8; MAX_PAYLOAD];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_LISTENERS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut payload)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let counts: Vec<(String, usize)> = serde_json::from_slice(&payload[..received.bytes])
        .map_err(|e| io::Error::other(format!("an unreadable route list: {e}")))?;
    let expected: usize = counts.iter().map(|(_, n)| n).sum();
    if expected != fds.len() {
        return Err(io::Error::other(format!(
            "the route list names {expected} sockets but {} came",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    Ok(counts
        .into_iter()
        .map(|(service, n)| {
            let listeners = fds.by_ref().take(n).map(TcpListener::from).collect();
            (service, listeners)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_cross_with_their_services() {
        let (a, b) = UnixStream::pair().expect("pair");
        let web = TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (web_addr, api_addr) = (
            web.local_addr().expect("addr"),
            api.local_addr().expect("addr"),
        );
        let listeners = vec![
            ("web".to_owned(), vec![OwnedFd::from(web)]),
            ("api".to_owned(), vec![OwnedFd::from(api)]),
        ];
        send_listeners(&a, &listeners).expect("send");
        let received = recv_listeners(&b).expect("receive");
        assert_eq!(received["web"][0].local_addr().expect("addr"), web_addr);
        assert_eq!(received["api"][0].local_addr().expect("addr"), api_addr);
        // The same socket: a connection queued on it is accepted on the other side.
        let _client = std::net::TcpStream::connect(web_addr).expect("connect");
        drop(listeners);
        received["web"][0]
            .accept()
            .expect("accepted through the handed-over socket");
    }
}
