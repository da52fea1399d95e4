//! Why a request did not get a backend's answer, typed: which side failed,
//! in which phase, what happened, whether the request may be sent again, the
//! status the client is answered with, and the two-letter termination code
//! the access log prints (`{termination}`, HAProxy's termination state:
//! who ended the request, then where it was).
//!
//! The backend's own errors (`backend::ConnectError`, `SendError`) say what
//! failed on a connection; [`Error`] is what the proxy decides from them and
//! what the frontends and the log are told. Pingora's `Error` (an error type,
//! its source side and a retry flag) is the model.

use std::borrow::Cow;
use std::fmt;

use http::StatusCode;

/// Who ended the request early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: a broken or slow request, a connection it closed.
    Client,
    /// A backend: refused, closed, timed out, answered with something broken.
    Backend,
    /// floatlb, by its configuration: a route's redirect, page or deny, a full
    /// queue, no route.
    Proxy,
}

/// Where the request was when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading and checking the client's head; routing it.
    Request,
    /// Waiting in its pool's queue for a backend slot.
    Queue,
    /// Connecting to a backend.
    Connect,
    /// Sent (or sending), waiting for the answer's head.
    Headers,
    /// Moving a body: the request's to the backend, the answer's to the client.
    Body,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Proxy => "proxy",
        }
    }
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Request,
        Phase::Queue,
        Phase::Connect,
        Phase::Headers,
        Phase::Body,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Queue => "queue",
            Phase::Connect => "connect",
            Phase::Headers => "headers",
            Phase::Body => "data",
        }
    }
}

/// Timeouts are counted by side (client or backend) and phase: this many.
pub const TIMEOUT_SLOTS: usize = 2 * Phase::ALL.len();

/// The counter of a timeout on `side` in `phase` (a proxy-side one counts
/// as the backend's: floatlb waited for a backend slot).
pub fn timeout_slot(side: Side, phase: Phase) -> usize {
    let s = usize::from(side != Side::Client);
    s * Phase::ALL.len() + Phase::ALL.iter().position(|&p| p == phase).unwrap_or(0)
}

/// The side and phase of each timeout counter, in slot order.
pub fn timeout_labels() -> impl Iterator<Item = (Side, Phase)> {
    [Side::Client, Side::Backend]
        .into_iter()
        .flat_map(|s| Phase::ALL.into_iter().map(move |p| (s, p)))
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing arrived within the time allowed.
    Timeout,
    /// The connection closed or failed.
    Closed,
    /// Not HTTP as the rules require it (a 4xx for a client, a 502 for a backend).
    Malformed,
    /// Larger than a limit allows.
    TooLarge,
    /// No backend could take it: none healthy, or the queue full.
    Unavailable,
    /// A route (or no route) says no.
    Denied,
    /// A route answers itself: a redirect or a page.
    Answered,
}

/// Whether the request may be sent again after this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing of it reached a backend: another may take it.
    Safe,
    /// It may have reached the backend: only an idempotent request whose
    /// whole body is still here may go again (RFC 9110 §9.2.2).
    IfIdempotent,
    /// Sending it again would not help, or could run it twice.
    Never,
}

/// A request's failure; see the module header.
#[derive(Debug, Clone)]
pub struct Error {
    pub side: Side,
    pub phase: Phase,
    pub kind: Kind,
    pub retry: Retry,
    /// What the client is answered.
    pub status: StatusCode,
    /// One line, for the answer's text and the log.
    pub reason: Cow<'static, str>,
}

impl Error {
    /// An error that is not retried.
    pub fn new(
        side: Side,
        phase: Phase,
        kind: Kind,
        status: StatusCode,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error {
            side,
            phase,
            kind,
            retry: Retry::Never,
            status,
            reason: reason.into(),
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The client's request refused while it was read: malformed, too
    /// large, or (for 408) too slow.
    pub fn refused(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        let kind = match status {
            StatusCode::REQUEST_TIMEOUT => Kind::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Kind::TooLarge,
            _ => Kind::Malformed,
        };
        Error::new(Side::Client, Phase::Request, kind, status, reason)
    }

    /// The access log's termination code: who ended the request (`C`
    /// client, `S` backend, lower case when by a timeout; `P` floatlb's
    /// refusal or limit, `L` a local answer) and where it was (`R` request,
    /// `Q` queue, `C` connect, `H` answer head, `D` data), as HAProxy writes
    /// them.
    pub fn termination(&self) -> Termination {
        let who = match (self.kind, self.side) {
            (Kind::Answered, _) => b'L',
            (Kind::Timeout, Side::Client) => b'c',
            (Kind::Timeout, _) => b's',
            (Kind::Malformed | Kind::TooLarge, Side::Client) => b'P',
            (Kind::Denied, _) | (Kind::Unavailable, Side::Proxy) => b'P',
            (_, Side::Client) => b'C',
            (_, Side::Backend) => b'S',
            (_, Side::Proxy) => b'P',
        };
        let at = match self.phase {
            Phase::Request => b'R',
            Phase::Queue => b'Q',
            Phase::Connect => b'C',
            Phase::Headers => b'H',
            Phase::Body => b'D',
        };
        Termination([who, at])
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Error {}

/// A termination code: two ASCII letters, `--` for a request that ended
/// normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination([u8; 2]);

impl Termination {
    pub const NORMAL: Termination = Termination(*b"--");

    pub fn as_str(&self) -> &str {
        // Built only from ASCII letters and dashes.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(side: Side, phase: Phase, kind: Kind) -> String {
        let e = Error::new(side, phase, kind, StatusCode::BAD_GATEWAY, "x");
        e.termination().to_string()
    }

    #[test]
    fn termination_codes_say_who_and_where_as_haproxy_does() {
        assert_eq!(
            code(Side::Backend, Phase::Connect, Kind::Closed),
            "SC",
            "a refused connect"
        );
        assert_eq!(
            code(Side::Backend, Phase::Connect, Kind::Timeout),
            "sC",
            "a connect timeout"
        );
        assert_eq!(
            code(Side::Backend, Phase::Headers, Kind::Timeout),
            "sH",
            "the server timeout"
        );
        assert_eq!(
            code(Side::Backend, Phase::Headers, Kind::Malformed),
            "SH",
            "a broken answer head"
        );
        assert_eq!(code(Side::Client, Phase::Body, Kind::Closed), "CD");
        assert_eq!(code(Side::Client, Phase::Body, Kind::Timeout), "cD");
        assert_eq!(code(Side::Proxy, Phase::Queue, Kind::Unavailable), "PQ");
        assert_eq!(code(Side::Backend, Phase::Queue, Kind::Timeout), "sQ");
        assert_eq!(code(Side::Proxy, Phase::Request, Kind::Denied), "PR");
        assert_eq!(code(Side::Proxy, Phase::Request, Kind::Answered), "LR");
        assert_eq!(Termination::NORMAL.as_str(), "--");
    }

    #[test]
    fn each_timeout_has_its_counter() {
        let slots: Vec<usize> = timeout_labels().map(|(s, p)| timeout_slot(s, p)).collect();
        assert_eq!(slots, (0..TIMEOUT_SLOTS).collect::<Vec<_>>());
    }

    #[test]
    fn refusals_of_a_request_are_the_clients() {
        let e = Error::refused(StatusCode::BAD_REQUEST, "invalid Content-Length");
        assert_eq!(
            (e.side, e.kind, e.retry),
            (Side::Client, Kind::Malformed, Retry::Never)
        );
        assert_eq!(e.termination().as_str(), "PR");
        let e = Error::refused(StatusCode::REQUEST_TIMEOUT, "slow");
        assert_eq!(e.termination().as_str(), "cR");
        let e = Error::refused(StatusCode::PAYLOAD_TOO_LARGE, "big");
        assert_eq!(e.kind, Kind::TooLarge);
    }
}
