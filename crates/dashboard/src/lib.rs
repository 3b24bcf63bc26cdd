//! The coordinator's HTTP face: the steward's live dashboard, a read-only JSON API, changes
//! that only a steward's signed request can make, and Prometheus metrics.
//!
//! - [`serve`] runs the HTTP server (axum) for a coordinator that implements
//!   [`FederationView`]. It serves one page whose script and style are compiled into the
//!   binary (no CDN, nothing fetched at run time); the page draws its own SVG chart and stays
//!   live through server-sent events (`/api/events`), sampled once per interval for every
//!   watcher together. The JSON shapes are the types of [`api`]; `docs/api.md` lists the
//!   routes. [`serve_with`] takes [`DashboardOptions`]: the host names it answers to besides
//!   its own address (it refuses others, against DNS rebinding), how long a client may take
//!   to send its headers and a request to be answered, and how many connections it serves
//!   at once.
//! - [`StewardRequest`] is what a steward signs to pause, resume or remove a member: the
//!   federation, method, path, body digest, a timestamp and a nonce, under its own domain
//!   separator. [`SignedHeaders::verify`] checks it against the charter's stewards and the
//!   clock; the coordinator refuses a nonce it has seen, so a replay changes nothing.
//! - [`Metrics`] is the coordinator's Prometheus registry (the `prometheus-client` crate):
//!   rounds, durations, updates accepted and refused by [`RefusalReason`], bytes, gauges.
//! - [`DashboardClient`] calls the API; `harambee admin` signs with it.
//!
//! ```
//! use harambee_dashboard::{SignedHeaders, StewardRequest};
//! use harambee_identity::Identity;
//!
//! let steward = Identity::generate().unwrap();
//! let stewards = vec![steward.public().to_string()];
//! let request = StewardRequest {
//!     federation: "f00d",
//!     method: "POST",
//!     path: "/api/admin/pause",
//!     body: b"{}",
//!     timestamp_ms: 1_700_000_000_000,
//!     nonce: [7; 16],
//! };
//! let headers = request.sign(&steward);
//! let ok = headers.verify("f00d", "POST", "/api/admin/pause", b"{}", &stewards, 1_700_000_001_000);
//! assert!(ok.is_ok());
//! // The same signature does not cover another path.
//! let other = headers.verify("f00d", "POST", "/api/admin/resume", b"{}", &stewards, 1_700_000_001_000);
//! assert!(other.is_err());
//! ```

mod accept;
pub mod api;
mod client;
mod http;
mod metrics;
mod signed;
mod view;

pub use accept::{DashboardOptions, HEADER_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT};
pub use client::{ClientError, DashboardClient, Reply};
pub use http::{MAX_BODY_BYTES, MAX_PAGE, serve, serve_with};
pub use metrics::{Metrics, RefusalReason};
pub use signed::{
    AuthError, Authorised, HEADER_NONCE, HEADER_SIGNATURE, HEADER_STEWARD, HEADER_TIMESTAMP,
    MAX_SKEW_MS, SignedHeaders, StewardRequest, unix_ms,
};
pub use view::{AdminError, FederationView, Gauges, StewardAction, ViewError};
