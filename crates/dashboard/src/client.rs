//! A small client of the dashboard's API: what `harambee admin` and the tests use.

use harambee_identity::Identity;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

use crate::api::{ErrorBody, FederationInfo};
use crate::signed::{StewardRequest, unix_ms};

/// Why a call to the dashboard failed before an answer came back.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not one this client can call.
    #[error("{0}")]
    Url(String),
    /// The connection or the exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer is not the JSON expected.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

/// An answer from the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ClientError::Answer(format!(
                "{e}: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            ))
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// What an error answer says (its `error` field), or the body as text.
    pub fn error(&self) -> String {
        self.json::<ErrorBody>()
            .map(|e| e.error)
            .unwrap_or_else(|_| self.text())
    }
}

/// A client of one dashboard, at `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct DashboardClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl DashboardClient {
    /// A client of the dashboard at `base_url` (plain `http://`, as the dashboard serves).
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(ClientError::Url(format!(
                "{base_url}: the dashboard speaks plain http:// (put a TLS proxy in front of it to expose it)"
            )));
        }
        base.parse::<hyper::Uri>()
            .map_err(|e| ClientError::Url(format!("{base_url}: {e}")))?;
        Ok(Self {
            base,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send("GET", path, &[], Vec::new()).await
    }

    /// Any request, with extra headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ClientError::Url(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Http(format!("{}: {e}", self.base)))?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    /// A steward's `POST path` with `body`, signed with `steward`'s key for this federation
    /// (whose id is asked for first).
    pub async fn steward_post(
        &self,
        steward: &Identity,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        let info = self.get("/api/federation").await?;
        if info.status != 200 {
            return Err(ClientError::Answer(format!(
                "GET /api/federation: {} {}",
                info.status,
                info.error()
            )));
        }
        let federation: FederationInfo = info.json()?;
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce)
            .map_err(|e| ClientError::Http(format!("no randomness: {e}")))?;
        let headers = StewardRequest {
            federation: &federation.federation_id,
            method: "POST",
            path,
            body: &body,
            timestamp_ms: unix_ms(),
            nonce,
        }
        .sign(steward);
        let pairs = headers.pairs();
        let refs: Vec<(&str, String)> = pairs.iter().map(|(n, v)| (*n, v.clone())).collect();
        self.send("POST", path, &refs, body).await
    }
}
