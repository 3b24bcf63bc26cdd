//! The HTTP server: the page, the JSON API, the live events, the admin routes, `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio::sync::watch;

use crate::accept::{DashboardOptions, accept};
use crate::api::{ChartPoint, ErrorBody, PauseRequest, RemoveRequest, RoundPage};
use crate::metrics::Metrics;
use crate::signed::{AuthError, SignedHeaders, unix_ms};
use crate::view::{AdminError, FederationView, StewardAction, ViewError};

/// Largest request body accepted (admin requests are a few bytes of JSON).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest page of `/api/rounds`.
pub const MAX_PAGE: u64 = 500;
/// How often the live view is sampled while someone watches it.
const LIVE_EVERY: Duration = Duration::from_millis(500);

const INDEX_HTML: &str = include_str!("../assets/index.html");
const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

/// Only our own files, no inline code, no framing: what the page needs and nothing more.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The live state as last sampled, already serialised: every watcher shares one sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Live {
    overview: String,
    chart: String,
}

#[derive(Clone)]
struct App {
    view: Arc<dyn FederationView>,
    metrics: Metrics,
    live: watch::Sender<Live>,
}

/// Serves the dashboard on `listener` with [`DashboardOptions::default`] until the task is
/// dropped or aborted; see [`serve_with`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<dyn FederationView>,
    metrics: Metrics,
) -> std::io::Result<()> {
    serve_with(listener, view, metrics, DashboardOptions::default()).await
}

/// Serves the dashboard on `listener` until the task is dropped or aborted, which ends every
/// connection with it. Live connections (server-sent events) never end by themselves, so the
/// owner aborts this task rather than waiting for a graceful end. Returns at once with
/// `InvalidInput` if [`DashboardOptions::validate`] refuses `options`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    view: Arc<dyn FederationView>,
    metrics: Metrics,
    options: DashboardOptions,
) -> std::io::Result<()> {
    options.validate()?;
    let (live, _) = watch::channel(Live::default());
    let app = App {
        view,
        metrics: metrics.clone(),
        live,
    };
    let _sampler = AbortOnDrop(tokio::spawn(sample_live(app.clone())));
    accept(
        listener,
        router(app, options.request_timeout),
        &options,
        metrics,
    )
    .await
}

/// Aborts the task when dropped: the sampler lives exactly as long as the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The routes; every one but the live stream must answer within `request_timeout`.
fn router(app: App, request_timeout: Duration) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/api", get(api_index))
        .route("/api/federation", get(federation))
        .route("/api/members", get(members))
        .route("/api/round", get(current_round))
        .route("/api/rounds", get(rounds))
        .route("/api/rounds/{round}", get(round))
        .route("/api/ledger/head", get(tree_head))
        .route("/api/admin/pause", post(pause))
        .route("/api/admin/resume", post(resume))
        .route("/api/admin/remove", post(remove))
        .route("/metrics", get(metrics))
        // Only the routes above: the live stream below is meant to last.
        .route_layer(middleware::from_fn_with_state(request_timeout, time_limit))
        .route("/api/events", get(events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Answers 503 for a request not answered within `limit` (a body that trickles in, a
/// coordinator too busy to answer), so neither holds its connection for long.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request was not answered within {} s; try again",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// An error as every route returns it: a status and a JSON body that says what was wrong.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            status: self.0.as_u16(),
            error: self.1,
        };
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.0)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::NotSteward(_) => StatusCode::FORBIDDEN,
            AuthError::Malformed { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError(status, e.to_string())
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match e {
            AdminError::Replay | AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::UnknownParticipant(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs a view call on a blocking thread: it takes the coordinator's lock and reads SQLite.
async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&dyn FederationView) -> Result<T, ViewError> + Send + 'static,
) -> ApiResult<T> {
    let view = Arc::clone(&app.view);
    tokio::task::spawn_blocking(move || f(view.as_ref()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::from)
}

fn with_type(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    with_type("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    with_type("text/javascript; charset=utf-8", DASHBOARD_JS)
}

async fn style() -> Response {
    with_type("text/css; charset=utf-8", DASHBOARD_CSS)
}

async fn api_index() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "routes": {
            "GET /api/federation": "the federation, its charter's key rules and stewards",
            "GET /api/members": "enrolled participants and what each is doing",
            "GET /api/round": "the current round",
            "GET /api/rounds?offset=0&limit=50": "completed rounds, oldest first",
            "GET /api/rounds/{round}": "one round with its inputs and ledger entries",
            "GET /api/ledger/head": "the latest signed tree head and how to verify it",
            "GET /api/events": "server-sent events: overview and chart, as they change",
            "POST /api/admin/pause": "steward-signed: open no new round",
            "POST /api/admin/resume": "steward-signed: open rounds again",
            "POST /api/admin/remove": "steward-signed: {\"participant\": ID} never trains again",
            "GET /metrics": "Prometheus text format",
        },
        "docs": "docs/api.md in the Harambee repository",
    }))
}

async fn federation(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(blocking(&app, |v| v.federation()).await?))
}

async fn members(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    let overview = blocking(&app, |v| v.overview()).await?;
    Ok(axum::Json(overview.members))
}

async fn current_round(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    let overview = blocking(&app, |v| v.overview()).await?;
    Ok(axum::Json(overview.round))
}

/// `offset` and `limit` of `/api/rounds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    50
}

async fn rounds(
    State(app): State<App>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let Query(page) = query.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "bad query: {}; use ?offset=N&limit=M with whole numbers",
                e.body_text()
            ),
        )
    })?;
    if page.limit == 0 || page.limit > MAX_PAGE {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_PAGE}, not {}", page.limit),
        ));
    }
    let all = blocking(&app, |v| v.rounds()).await?;
    let total = all.len() as u64;
    let rounds = all
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(page.limit as usize)
        .collect();
    Ok(axum::Json(RoundPage {
        rounds,
        total,
        offset: page.offset,
        limit: page.limit,
    }))
}

async fn round(
    State(app): State<App>,
    path: Result<Path<u64>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let Path(n) = path.map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "the round must be a whole number, e.g. /api/rounds/3".into(),
        )
    })?;
    blocking(&app, move |v| v.round(n))
        .await?
        .map(axum::Json)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("round {n} has not opened")))
}

async fn tree_head(State(app): State<App>) -> ApiResult<impl IntoResponse> {
    blocking(&app, |v| v.overview())
        .await?
        .head
        .map(axum::Json)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "the ledger has no signed tree head yet".into(),
            )
        })
}

async fn metrics(State(app): State<App>) -> ApiResult<Response> {
    let gauges = blocking(&app, |v| v.gauges()).await?;
    let text = app.metrics.encode(&gauges);
    Ok(([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], text).into_response())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no route {}; GET /api lists them", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; GET /api lists the routes",
            uri.path()
        ),
    )
}

/// Samples the live view while anyone watches, and publishes it when it changed: one sample
/// per interval however many pages are open.
async fn sample_live(app: App) {
    let mut tick = tokio::time::interval(LIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if app.live.receiver_count() == 0 {
            continue;
        }
        let sample = blocking(&app, |v| {
            let overview = v.overview()?;
            let chart: Vec<ChartPoint> = v.rounds()?.iter().map(ChartPoint::from).collect();
            Ok(Live {
                overview: serde_json::to_string(&overview).unwrap_or_default(),
                chart: serde_json::to_string(&chart).unwrap_or_default(),
            })
        })
        .await;
        match sample {
            Ok(live) => {
                app.live.send_if_modified(|current| {
                    let changed = *current != live;
                    *current = live;
                    changed
                });
            }
            Err(e) => tracing::warn!(error = %e.1, "dashboard: could not sample the federation"),
        }
    }
}

/// `GET /api/events`: an `overview` event whenever the federation changes and a `chart`
/// event whenever the chart does, each with the whole current value (a page that just
/// connected gets both at once).
async fn events(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = app.live.subscribe();
    let first = app.live.borrow().clone();
    let start = Live::default();
    let changes = stream::unfold(
        (receiver, start, Some(first)),
        |(mut receiver, sent, first)| async move {
            let next = match first {
                Some(now) if !now.overview.is_empty() => now,
                _ => {
                    receiver.changed().await.ok()?;
                    receiver.borrow_and_update().clone()
                }
            };
            let mut out = Vec::new();
            if next.overview != sent.overview {
                out.push(Ok(Event::default().event("overview").data(&next.overview)));
            }
            if next.chart != sent.chart {
                out.push(Ok(Event::default().event("chart").data(&next.chart)));
            }
            Some((stream::iter(out), (receiver, next, None)))
        },
    )
    .flatten();
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Checks a steward's signature on an admin request, before anything in it is read.
fn authorise(
    info: &crate::api::FederationInfo,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<crate::signed::Authorised> {
    let signed = SignedHeaders::parse(|name| headers.get(name).and_then(|v| v.to_str().ok()))?;
    let stewards: Vec<String> = info.stewards.iter().map(|s| s.public_key.clone()).collect();
    Ok(signed.verify(
        &info.federation_id,
        method.as_str(),
        uri.path(),
        body,
        &stewards,
        unix_ms(),
    )?)
}

async fn admin(
    app: App,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    action: impl FnOnce(&[u8]) -> ApiResult<StewardAction> + Send,
) -> ApiResult<Response> {
    let body = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    let info = blocking(&app, |v| v.federation()).await?;
    let by = authorise(&info, &method, &uri, &headers, &body)?;
    let action = action(&body)?;
    let view = Arc::clone(&app.view);
    let name = action.name();
    let reply = tokio::task::spawn_blocking(move || view.apply(&action, &by))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    tracing::info!(action = name, "steward request applied");
    let mut response = axum::Json(reply).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed JSON body: {e}")))
}

async fn pause(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    admin(app, method, uri, headers, body, |b| {
        parse_body::<PauseRequest>(b).map(|_| StewardAction::Pause)
    })
    .await
}

async fn resume(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    admin(app, method, uri, headers, body, |b| {
        parse_body::<PauseRequest>(b).map(|_| StewardAction::Resume)
    })
    .await
}

async fn remove(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    admin(app, method, uri, headers, body, |b| {
        let request: RemoveRequest = serde_json::from_slice(b).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("malformed JSON body: {e}; send {{\"participant\": ID}}"),
            )
        })?;
        Ok(StewardAction::Remove {
            participant: request.participant,
        })
    })
    .await
}
