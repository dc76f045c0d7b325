//! The response body handed to hyper: either a short text made by the proxy, or a
//! backend's body streamed through without buffering, which keeps its request counted as
//! active until it ends and breaks off when the backend is cut.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::backends::ActiveGuard;
use crate::upstream::Lease;

/// Body of every response the HTTP proxy sends.
#[derive(Debug)]
pub(crate) struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A proxy-made message (`None` once sent, or for an empty body).
    Text(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ProxyBody {
    pub(crate) fn text(text: &'static str) -> Self {
        Self::bytes(Bytes::from_static(text.as_bytes()))
    }

    pub(crate) fn bytes(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Text(Some(bytes)),
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Text(None),
        }
    }

    /// A backend's body; `lease` is the backend connection, given back for reuse when the
    /// body has been read to its end.
    pub(crate) fn upstream(inner: Incoming, guard: ActiveGuard, lease: Lease) -> Self {
        let mut body = UpstreamBody {
            inner,
            guard: Some(guard),
            lease: Some(lease),
            cut_wait: None,
        };
        if body.inner.is_end_stream() {
            // hyper will not poll an empty body: the exchange is already complete.
            body.finish();
        }
        Self {
            kind: Kind::Upstream(body),
        }
    }
}

/// Why a streamed response broke off; hyper then closes the client connection, which is
/// the only way HTTP/1.1 has to say "this response is incomplete".
#[derive(Debug)]
pub(crate) enum BodyError {
    Upstream(hyper::Error),
    Cut,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upstream(_) => f.write_str("backend response body failed"),
            Self::Cut => f.write_str("backend drained: response cut at the drain deadline"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Upstream(e) => Some(e),
            Self::Cut => None,
        }
    }
}

struct UpstreamBody {
    inner: Incoming,
    /// Held until the body ends (not until hyper drops it), so a drain sees the request
    /// finish as soon as its last byte is handed to hyper.
    guard: Option<ActiveGuard>,
    /// Given back only after a complete body; on error or cut it is dropped, which closes
    /// the connection (HTTP/1.1 cannot reuse a connection with a half-read response).
    lease: Option<Lease>,
    /// Created only once the backend makes us wait, so fast responses never pay for it:
    /// wakes this body if the backend is cut while nothing arrives.
    cut_wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl UpstreamBody {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(guard) = &self.guard else {
            return Poll::Ready(None);
        };
        if guard.tracker().is_cut() {
            return self.cut();
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if self.inner.is_end_stream() {
                    self.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                guard.record_error();
                if let Some(held_back) = guard.tracker().log_failure() {
                    tracing::warn!(backend = %guard.tracker().addr(), %error, held_back, "backend response body failed");
                }
                self.guard = None;
                self.lease = None;
                Poll::Ready(Some(Err(BodyError::Upstream(error))))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let wait = self.cut_wait.get_or_insert_with(|| {
                    let tracker = guard.shared_tracker();
                    Box::pin(async move { tracker.cut_requested().await })
                });
                if wait.as_mut().poll(cx).is_ready() {
                    return self.cut();
                }
                Poll::Pending
            }
        }
    }

    /// The body ended cleanly: the request is over and its connection can be reused.
    fn finish(&mut self) {
        self.guard = None;
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }

    fn cut(&mut self) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(guard) = self.guard.take() {
            guard.record_cut();
        }
        self.lease = None;
        Poll::Ready(Some(Err(BodyError::Cut)))
    }
}

impl fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Text(text) => Poll::Ready(text.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Upstream(body) => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Text(text) => text.is_none(),
            Kind::Upstream(body) => body.guard.is_none() || body.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Text(text) => SizeHint::with_exact(text.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(body) => body.inner.size_hint(),
        }
    }
}

/// Body of every request sent to a backend: the client's, streamed, or none for a request
/// resent after a stale pooled connection (only body-less requests are resent).
#[derive(Debug)]
pub(crate) enum RequestBody {
    Client(Incoming),
    Empty,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Self::Client(body) => Pin::new(body).poll_frame(cx),
            Self::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Client(body) => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Client(body) => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}
