//! The admin listener (`[admin] address`): `/healthz`, `/status` (live HTML),
//! `/status.json`,
//! `/metrics` (see `metrics`) and the runtime API under `/admin/` (see `api`). Kept off the client listener so it works whatever the
//! proxy's load, and bound to loopback in the example config.

pub mod api;
pub mod exposition;
pub mod hooks;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::observe::json::json_str;
use crate::proxy::state::Shared;

type RespBody = http_body_util::Full<bytes::Bytes>;

/// An answer of the admin listener.
fn local_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Serves admin requests until the listener errors out.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, extra: Arc<dyn AdminHooks>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let extra = extra.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                let extra = extra.clone();
                async move {
                    let _answering = Answering::start();
                    Ok::<_, Infallible>(route(req, &shared, &extra).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// `/status`: a page that polls `/status.json` twice a second and redraws.
const STATUS_PAGE: &str = include_str!("status.html");

use crate::runtime::admin::hooks::AdminHooks;

/// Admin requests being answered: a retiring worker lets them finish (the
/// answer to the upgrade that retires it is one).
static ANSWERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Answering;

impl Answering {
    fn start() -> Self {
        ANSWERING.fetch_add(1, Ordering::AcqRel);
        Answering
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        ANSWERING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits (up to 5 s) for admin answers under way, and a moment for their
/// last bytes to leave.
pub async fn finish_answers() {
    for _ in 0..500 {
        if ANSWERING.load(Ordering::Acquire) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

/// No VRRP: nothing to add.
pub struct NoHooks;
impl AdminHooks for NoHooks {}

async fn route(
    req: Request<Incoming>,
    shared: &Shared,
    hooks: &Arc<dyn AdminHooks>,
) -> Response<RespBody> {
    let extra: &dyn AdminHooks = &**hooks;
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            if shared.healthy() {
                local_response(StatusCode::OK, "text/plain", "ok\n")
            } else {
                local_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "unhealthy\n")
            }
        }
        (&Method::GET, "/status") => {
            local_response(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE)
        }
        (&Method::GET, "/status.json") => local_response(
            StatusCode::OK,
            "application/json",
            status_json(shared, extra),
        ),
        (&Method::GET, "/certificates") => {
            local_response(StatusCode::OK, "text/plain", crate::runtime::acme::report())
        }
        (&Method::GET, "/metrics") => local_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::runtime::admin::exposition::render(shared, extra),
        ),
        (method, path) if path.starts_with("/admin/") => {
            if method != Method::POST {
                let mut r = local_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "the runtime API takes POST\n",
                );
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
                return r;
            }
            let auth = req.headers().get(http::header::AUTHORIZATION);
            if let Err(r) = api::authorize(shared, auth.map(|v| v.as_bytes())) {
                let mut resp = local_response(r.status, "text/plain", r.text);
                if r.status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                }
                return resp;
            }
            let r = match &path["/admin/".len()..] {
                // Both block until clients have moved or the new worker serves.
                "handover" => blocking(hooks, "handover", |h| h.handover()).await,
                "reload" => api::reload(hooks).await,
                "upgrade" => blocking(hooks, "upgrade", |h| h.upgrade()).await,
                "certificates/renew" => {
                    crate::runtime::acme::renew_now();
                    api::reply(
                        StatusCode::OK,
                        "renewal of every [[tls.acme]] certificate asked for",
                    )
                }
                "resume" => match hooks.resume() {
                    Ok(m) => api::reply(StatusCode::OK, m),
                    Err(m) => api::reply(StatusCode::CONFLICT, m),
                },
                rest => match rest.strip_prefix("backend/") {
                    Some(rest) => api::backend_call(shared, rest),
                    None => api::reply(StatusCode::NOT_FOUND, "not found"),
                },
            };
            local_response(r.status, "text/plain", r.text)
        }
        _ => local_response(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// An action that blocks (a handover, an upgrade), run off the runtime's threads:
/// 200 with its message, 409 with its refusal.
async fn blocking(
    hooks: &Arc<dyn AdminHooks>,
    what: &str,
    action: impl FnOnce(&dyn AdminHooks) -> Result<String, String> + Send + 'static,
) -> api::Reply {
    let hooks = hooks.clone();
    match tokio::task::spawn_blocking(move || action(&*hooks)).await {
        Ok(Ok(m)) => api::reply(StatusCode::OK, m),
        Ok(Err(m)) => api::reply(StatusCode::CONFLICT, m),
        Err(e) => api::reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} failed: {e}"),
        ),
    }
}

fn status_json(shared: &Shared, extra: &dyn AdminHooks) -> String {
    let snap = shared.live.load_full();
    let s = &shared.stats;
    let mut out = String::from("{");
    let _ = write!(
        out,
        "\"healthy\":{},\"requests\":{},\"connections_active\":{},\"algorithm\":{},\"backends\":[",
        shared.healthy(),
        s.requests.load(Ordering::Relaxed),
        s.connections_active.load(Ordering::Relaxed),
        json_str(&format!("{:?}", snap.config.balance.algorithm)),
    );
    for (i, (pool, b, c)) in snap.each_backend().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"pool\":{},\"address\":{},\"up\":{},\"admin\":\"{}\",\"weight\":{},\"weight_set\":{},\"in_flight\":{},\"requests\":{},\"idle_connections\":{}}}",
            json_str(&b.name),
            json_str(&pool.name),
            json_str(&b.address.to_string()),
            b.is_up(),
            b.admin_state().as_str(),
            b.weight_override().unwrap_or(c.weight),
            b.weight_override().is_some(),
            b.in_flight.load(Ordering::Relaxed),
            b.stats.requests.load(Ordering::Relaxed),
            b.pool.idle_count(),
        );
    }
    out.push(']');
    if let Some(more) = extra.status_json() {
        out.push(',');
        out.push_str(&more);
    }
    out.push_str("}\n");
    out
}
