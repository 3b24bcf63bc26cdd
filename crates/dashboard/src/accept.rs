//! Accepting connections: which host a request may name, how long a client may take to send
//! its headers, and how many connections are served at once.
//!
//! `axum::serve` did none of this (any `Host`, no header deadline, no cap), so the dashboard
//! runs its own accept loop over hyper's HTTP/1 connection and hands each request that passes
//! to the axum router.

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use futures_util::future::{Either, ready};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service as _, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// Default of [`DashboardOptions::max_connections`].
pub const MAX_CONNECTIONS: usize = 256;
/// Default of [`DashboardOptions::header_timeout`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`DashboardOptions::request_timeout`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most a connection buffers of a request's head (hyper's floor is 8 KiB). Browsers send a
/// few KiB, cookies for `localhost` included; with the cap this bounds the server's buffers
/// at `MAX_CONNECTIONS` × 64 KiB.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How the dashboard's HTTP server guards the coordinator. [`serve`](crate::serve) uses
/// [`DashboardOptions::default`]; [`serve_with`](crate::serve_with) takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardOptions {
    /// Host names a request may name besides the address it arrived on, for a reverse proxy
    /// that passes its public name on or a tunnel to another port: `dashboard.example.org`
    /// (any port) or `dashboard.example.org:8443` (that port only). Without them only the
    /// bound address (`127.0.0.1:7444`, `[::1]:7444`; bound to `0.0.0.0:7444`, that and the
    /// address a connection arrived on) and, on loopback, `localhost:7444` are served, so a
    /// web page on a name an attacker controls cannot read the dashboard by rebinding that
    /// name to it (DNS rebinding). Empty by default.
    pub allowed_hosts: Vec<String>,
    /// Connections served at once: pages, API calls, scrapes and live streams together. Past
    /// it a new connection is answered 503 and closed at once, until some end.
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and how long an idle kept-alive
    /// connection waits for the next request, before the connection is closed.
    pub header_timeout: Duration,
    /// How long a request may take to be answered (its body read included), the live
    /// stream `/api/events` excepted: past it the answer is a 503.
    pub request_timeout: Duration,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_connections: MAX_CONNECTIONS,
            header_timeout: HEADER_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

impl DashboardOptions {
    /// Checks the options without serving: every allowed host is a host name, an IP address
    /// or either with a port, and the limits are not zero. [`serve_with`](crate::serve_with)
    /// refuses to start with options this refuses.
    pub fn validate(&self) -> io::Result<()> {
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        AllowedHosts::new(any, &self.allowed_hosts)?;
        let zero = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the dashboard's {what} must not be zero"),
            ))
        };
        if self.max_connections == 0 {
            return zero("connection cap");
        }
        if self.header_timeout.is_zero() {
            return zero("header timeout");
        }
        if self.request_timeout.is_zero() {
            return zero("request timeout");
        }
        Ok(())
    }
}

/// Accepts connections on `listener` for ever, serving each with `router` under `options`
/// (which [`DashboardOptions::validate`] has passed).
pub(crate) async fn accept(
    listener: TcpListener,
    router: Router,
    options: &DashboardOptions,
    metrics: Metrics,
) -> io::Result<()> {
    let hosts = Arc::new(AllowedHosts::new(
        listener.local_addr()?,
        &options.allowed_hosts,
    )?);
    let permits = Arc::new(Semaphore::new(options.max_connections));
    let busy = busy_reply(options.max_connections);
    let router = TowerToHyperService::new(router);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // Owned here, so a connection (a live stream above all) ends when this future is dropped.
    let mut connections = JoinSet::new();
    let mut at_cap = false;
    loop {
        let (stream, peer) = tokio::select! {
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after(&e).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics.http_connection_refused();
            if !at_cap {
                at_cap = true;
                tracing::warn!(
                    max = options.max_connections,
                    "dashboard: connection cap reached; new connections are closed until some end"
                );
            }
            refuse(stream, &busy);
            continue;
        };
        // Warn again only once the load has fallen well below the cap, not at every flutter.
        if permits.available_permits() >= options.max_connections / 2 {
            at_cap = false;
        }
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let hosts = Arc::clone(&hosts);
        let router = router.clone();
        let service =
            service_fn(
                move |request: Request<Incoming>| match hosts.refusal(local, &request) {
                    Some(refused) => Either::Left(ready(Ok::<_, Infallible>(refused))),
                    None => Either::Right(router.call(request)),
                },
            );
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let open = metrics.http_connection_opened();
        connections.spawn(async move {
            let _held = (permit, open);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "dashboard: connection ended");
            }
        });
    }
}

/// After a failed accept: a connection that vanished first costs nothing; anything else
/// (out of file descriptors above all) gets a short pause instead of a busy loop.
async fn pause_after(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!(error = %e, "dashboard: cannot accept a connection");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a connection over the cap is told before it is closed.
fn busy_reply(max: usize) -> String {
    let body =
        format!("The dashboard is serving its maximum of {max} connections; try again shortly.\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Writes `busy` if the socket takes it at once (it is fresh, so it does), then closes: no
/// task, no buffer, nothing waits on the client.
fn refuse(stream: TcpStream, busy: &str) {
    if let Ok(mut stream) = stream.into_std() {
        let _ = stream.write(busy.as_bytes());
    }
}

/// The host names served: the address a connection arrived on, the address the server is
/// bound to (`0.0.0.0:7444` too, which curl on Linux sends), and the operator's.
#[derive(Debug)]
struct AllowedHosts {
    /// The listener's own address.
    bound: SocketAddr,
    /// Lower-case names, IPv6 literals in brackets, each with its port if one was given.
    extra: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    fn new(bound: SocketAddr, extra: &[String]) -> io::Result<Self> {
        let extra = extra
            .iter()
            .map(|entry| {
                split_authority(entry).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "the dashboard's allowed host {entry:?} is not a host name or address, \
                             with or without a port (e.g. dashboard.example.org or \
                             dashboard.example.org:8443)"
                        ),
                    )
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Self { bound, extra })
    }

    /// Whether `authority` (a `Host` value) names this dashboard on a connection that
    /// arrived at `local`.
    fn admits(&self, local: SocketAddr, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        let ip = local.ip().to_canonical();
        let on_our_port = port.unwrap_or(80) == local.port();
        let bound = self.bound.ip().to_canonical();
        let names_us = host_ip(&host).is_some_and(|named| named == ip || named == bound)
            || (host == "localhost" && ip.is_loopback());
        (names_us && on_our_port)
            || self
                .extra
                .iter()
                .any(|(name, p)| *name == host && p.is_none_or(|p| Some(p) == port))
    }

    /// The hosts served on a connection that arrived at `local`, for the refusal.
    fn describe(&self, local: SocketAddr) -> String {
        let ip = local.ip().to_canonical();
        let mut names = vec![SocketAddr::new(ip, local.port()).to_string()];
        let bound = SocketAddr::new(self.bound.ip().to_canonical(), local.port());
        if bound.ip() != ip {
            names.push(bound.to_string());
        }
        if ip.is_loopback() {
            names.push(format!("localhost:{}", local.port()));
        }
        names.extend(self.extra.iter().map(|(name, port)| match port {
            Some(port) => format!("{name}:{port}"),
            None => name.clone(),
        }));
        names.join(", ")
    }

    /// `None` if `request` may be served; otherwise the answer that refuses it. Every
    /// authority it presents must pass: the `Host` header (exactly one) and the URI's, if the
    /// request line has the absolute form.
    fn refusal(&self, local: SocketAddr, request: &Request<Incoming>) -> Option<Response<Body>> {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let named = match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().unwrap_or(""),
            (None, _) => return Some(self.refuse(local, "no Host header")),
            (Some(_), Some(_)) => return Some(self.refuse(local, "more than one Host header")),
        };
        let in_uri = request.uri().authority().map(|a| a.as_str());
        match in_uri
            .into_iter()
            .chain([named])
            .find(|a| !self.admits(local, a))
        {
            None => None,
            Some(other) => {
                let shown: String = other.chars().take(100).collect();
                Some(self.refuse(local, &format!("the host {shown:?}")))
            }
        }
    }

    fn refuse(&self, local: SocketAddr, what: &str) -> Response<Body> {
        let text = format!(
            "421 Misdirected Request: this dashboard does not answer to {what}.\n\
             It answers to: {}.\n\
             Naming the address guards against DNS rebinding (a web page on a name it controls \
             reading the federation's state). To reach the dashboard under another name (a \
             reverse proxy that passes its public name on, a tunnel to another port), add that \
             name to its allowed hosts: `http_allowed_hosts` in federation.toml.\n",
            self.describe(local)
        );
        let mut response = Response::new(Body::from(text));
        *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// Splits `host[:port]` (`[v6]` or `[v6]:port` for IPv6) into a lower-case host and its port;
/// `None` if it is not one.
fn split_authority(value: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            (&value[..inside.len() + 2], after)
        }
        None => match value.split_once(':') {
            Some((host, _)) => (host, &value[host.len()..]),
            None => (value, ""),
        },
    };
    let port = match port {
        "" => None,
        port => {
            let digits = port.strip_prefix(':')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    let name_ok = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    name_ok.then(|| (host.to_ascii_lowercase(), port))
}

/// The address a host names literally: dotted IPv4, or IPv6 in brackets.
fn host_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical()),
        None => host.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(bound: &str, local: &str, extra: &[&str], host: &str) -> bool {
        let extra: Vec<String> = extra.iter().map(|e| e.to_string()).collect();
        let (Ok(bound), Ok(local)) = (bound.parse(), local.parse()) else {
            panic!("bad test address {bound} or {local}");
        };
        AllowedHosts::new(bound, &extra).is_ok_and(|hosts| hosts.admits(local, host))
    }

    #[test]
    fn the_bound_and_the_arrival_address_are_admitted_and_no_other_name() {
        // Bound to every interface: the interface a request came in on, and 0.0.0.0 itself.
        let any = "0.0.0.0:7444";
        assert!(admitted(any, "192.0.2.5:7444", &[], "192.0.2.5:7444"));
        assert!(admitted(any, "192.0.2.5:7444", &[], "0.0.0.0:7444"));
        assert!(!admitted(any, "192.0.2.5:7444", &[], "192.0.2.6:7444"));
        assert!(!admitted(any, "192.0.2.5:7444", &[], "localhost:7444"));
        assert!(admitted(any, "127.0.0.1:7444", &[], "localhost:7444"));
        // IPv6, and IPv4 arriving on a dual-stack socket.
        assert!(admitted("[::1]:7444", "[::1]:7444", &[], "[::1]:7444"));
        assert!(admitted("[::1]:7444", "[::1]:7444", &[], "localhost:7444"));
        assert!(!admitted("[::1]:7444", "[::1]:7444", &[], "[::2]:7444"));
        assert!(admitted(
            "[::]:7444",
            "[::ffff:127.0.0.1]:7444",
            &[],
            "127.0.0.1:7444"
        ));
        assert!(!admitted(
            "[::]:7444",
            "[::ffff:127.0.0.1]:7444",
            &[],
            "[127.0.0.1]:7444"
        ));
        // Port 80 may go unsaid; another port may not.
        assert!(admitted("127.0.0.1:80", "127.0.0.1:80", &[], "127.0.0.1"));
        assert!(!admitted("127.0.0.1:81", "127.0.0.1:81", &[], "127.0.0.1"));
        // The operator's names.
        let extra = ["board.example", "[2001:db8::1]:443"];
        assert!(admitted(any, "192.0.2.5:7444", &extra, "BOARD.example:80"));
        assert!(admitted(any, "192.0.2.5:7444", &extra, "[2001:db8::1]:443"));
        assert!(!admitted(any, "192.0.2.5:7444", &extra, "[2001:db8::1]"));
        assert!(!admitted(
            any,
            "192.0.2.5:7444",
            &extra,
            "sub.board.example"
        ));
    }
}
