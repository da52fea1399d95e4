//! The runtime API on the admin listener (HAProxy's runtime API, over HTTP):
//! `POST /admin/backend/<name>/{drain,maint,ready}`, `POST
//! /admin/backend/<name>/weight/<n>` (`/weight/config` goes back to the
//! file's), `POST /admin/reload`, `POST /admin/handover`, `POST /admin/upgrade`,
//! `POST /admin/resume`. Mutating calls are
//! POST only and, with `[admin] token-file`, need `Authorization: Bearer
//! <token>`. What is set here lives in the backend's state, which a reload
//! keeps (matched by name), and shows in `/status.json`. `floatlb ctl` is the
//! command-line client.

use std::sync::Arc;

use http::StatusCode;

use crate::backend::AdminState;
use crate::proxy::state::Shared;
use crate::runtime::admin::hooks::AdminHooks;

/// What a call answers: a status and a line of text.
pub struct Reply {
    pub status: StatusCode,
    pub text: String,
}

/// A reply with `text` as its one line.
pub fn reply(status: StatusCode, text: impl Into<String>) -> Reply {
    let mut text = text.into();
    text.push('\n');
    Reply { status, text }
}

/// Whether `authorization` (the header's value, if any) carries the
/// configured token; `Ok` when no token is configured.
pub fn authorize(shared: &Shared, authorization: Option<&[u8]>) -> Result<(), Reply> {
    let snap = shared.live.load();
    let Some(file) = snap
        .config
        .admin
        .as_ref()
        .and_then(|a| a.token_file.as_ref())
    else {
        return Ok(());
    };
    let token = crate::config::read_token(file).map_err(|e| {
        tracing::error!(error = %e, "runtime API: cannot read the token");
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the admin token cannot be read",
        )
    })?;
    let given = authorization
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    // Compared in full whatever the first difference, like a constant-time compare.
    let matches = given.is_some_and(|g| {
        g.len() == token.len()
            && g.iter()
                .zip(token.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        Ok(())
    } else {
        Err(reply(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required",
        ))
    }
}

/// `POST /admin/backend/<name>/...`: sets a backend's state or weight.
pub fn backend_call(shared: &Shared, rest: &str) -> Reply {
    let mut parts = rest.split('/');
    let (Some(name), Some(action)) = (parts.next(), parts.next()) else {
        return reply(StatusCode::NOT_FOUND, "want /admin/backend/<name>/<action>");
    };
    let arg = parts.next();
    if parts.next().is_some() {
        return reply(StatusCode::NOT_FOUND, "want /admin/backend/<name>/<action>");
    }
    let snap = shared.live.load();
    let b = match snap.find_backend(name) {
        Ok(b) => b,
        Err(e) => return reply(StatusCode::NOT_FOUND, e),
    };
    let before = b.admin_state();
    let state = match (action, arg) {
        ("drain", None) => AdminState::Drain,
        ("maint", None) => AdminState::Maint,
        ("ready", None) => AdminState::Ready,
        ("weight", Some(w)) => {
            let weight = match w {
                "config" => None,
                w => match w.parse::<u32>() {
                    Ok(w) if w <= 256 => Some(w),
                    _ => {
                        return reply(
                            StatusCode::BAD_REQUEST,
                            format!("weight {w:?} is not in 0..=256 (or \"config\")"),
                        )
                    }
                },
            };
            b.set_weight_override(weight);
            tracing::info!(backend = %b.name, ?weight, "runtime API: weight set");
            let shown = weight.map_or("as configured".to_string(), |w| w.to_string());
            return reply(StatusCode::OK, format!("{}: weight {shown}", b.name));
        }
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("unknown action {action:?}: drain, maint, ready or weight/<n>"),
            )
        }
    };
    b.set_admin_state(state);
    tracing::info!(backend = %b.name, from = before.as_str(), to = state.as_str(), "runtime API: backend state set");
    reply(
        StatusCode::OK,
        format!("{}: {} (was {})", b.name, state.as_str(), before.as_str()),
    )
}

/// `POST /admin/reload`: the worker reloads as on SIGHUP, and the answer
/// comes once it is done: 200, or 422 with why the file was refused.
pub async fn reload(hooks: &Arc<dyn AdminHooks>) -> Reply {
    let hooks = hooks.clone();
    match tokio::task::spawn_blocking(move || hooks.reload()).await {
        Ok(Ok(m)) => reply(StatusCode::OK, m),
        Ok(Err(m)) => reply(StatusCode::UNPROCESSABLE_ENTITY, m),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the reload failed: {e}"),
        ),
    }
}
