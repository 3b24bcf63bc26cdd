//! Accepted connections, counted: at most `limits.max_connections` are served at once, and
//! one past the cap is closed as it arrives instead of queueing, so a flood of idle sockets
//! costs the coordinator a bounded number of file descriptors and never its honest members'
//! connections already open.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A TCP connection holding one of the listener's places until it closes.
pub(crate) struct CountedStream {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl Connected for CountedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The accepted connections of `listener`, at most `cap` open at once; one over the cap is
/// dropped (closed) here and the loop goes on accepting.
pub(crate) fn counted(
    listener: TcpListener,
    cap: usize,
) -> impl Stream<Item = io::Result<CountedStream>> + Send + 'static {
    let places = Arc::new(Semaphore::new(cap));
    tokio_stream::StreamExt::filter_map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        move |accepted| match accepted {
            Err(e) => Some(Err(e)),
            Ok(stream) => match Arc::clone(&places).try_acquire_owned() {
                Ok(place) => {
                    let _ = stream.set_nodelay(true);
                    Some(Ok(CountedStream {
                        stream,
                        _place: place,
                    }))
                }
                Err(_) => {
                    tracing::warn!(
                        peer = ?stream.peer_addr().ok(),
                        "connection refused: limits.max_connections are open"
                    );
                    None
                }
            },
        },
    )
}
