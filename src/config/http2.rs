//! `[http2]`: the limits HTTP/2 clients on the `[tls]` listener are held to
//! (RFC 9113 SETTINGS and the h2 crate's abuse limits), each stated here
//! rather than left to the crate's defaults, so that an upgrade cannot change
//! them unseen.
//!
//! Not for: serving HTTP/2 (`src/frontend/h2.rs`); docs/http2-defences.md
//! says which attack each limit answers.

use serde::Deserialize;

use super::values::Problems;

/// `[http2]`. A key the file leaves out takes its value from
/// `Http2::default()`, the one statement of the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Http2 {
    /// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2): streams open at
    /// once on one connection; a stream over it is refused with
    /// RST_STREAM(REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2), in bytes as RFC
    /// 9113 counts them (name + value + 32 per field, decoded): a larger
    /// request gets 431; one over four times this ends the connection with
    /// GOAWAY(ENHANCE_YOUR_CALM). Also bounds CONTINUATION frames.
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE (RFC 9113 §6.5.2, RFC 7541 §4.2): the
    /// HPACK dynamic table a client may fill, in bytes.
    pub header_table_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2): the largest frame payload
    /// taken, 16384 to 16777215; a larger frame is a FRAME_SIZE_ERROR.
    pub max_frame_size: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.9.2): request body bytes
    /// a stream may send before floatlb has passed them on.
    pub initial_stream_window: u32,
    /// The connection's receive window (RFC 9113 §6.9.1), for all its
    /// streams' request bodies together.
    pub initial_connection_window: u32,
    /// Answer bytes buffered per stream while the client's window is shut
    /// (h2 `max_send_buffer_size`).
    pub max_send_buffer: u32,
    /// Streams the client reset before floatlb took them up, at once (h2
    /// `max_pending_accept_reset_streams`): more ends the connection with
    /// GOAWAY(ENHANCE_YOUR_CALM). The rapid reset attack, CVE-2023-44487.
    pub max_pending_reset_streams: u32,
    /// Streams floatlb resets for the client's errors (a malformed stream,
    /// one over `max-concurrent-streams`) on one connection (h2
    /// `max_local_error_reset_streams`): more ends the connection with
    /// GOAWAY(ENHANCE_YOUR_CALM).
    pub max_error_resets: u32,
    /// PING, SETTINGS and RST_STREAM frames a connection may send per
    /// second, ten seconds' worth at once: more ends it with
    /// GOAWAY(ENHANCE_YOUR_CALM) (floatlb's own count, `h2_guard`).
    pub control_frame_rate: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            // nginx's default is 128 too (HAProxy's 100).
            max_concurrent_streams: 128,
            max_header_list_size: 16 << 10,
            header_table_size: 4096,
            max_frame_size: 16 << 10,
            initial_stream_window: 1 << 20,
            initial_connection_window: 1 << 20,
            max_send_buffer: 400 << 10,
            max_pending_reset_streams: 20,
            max_error_resets: 1024,
            control_frame_rate: 100,
        }
    }
}

/// The largest flow-control window (RFC 9113 §6.9.1: 2^31 − 1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

impl Http2 {
    /// Values h2 would refuse (or panic on), and zeros that would leave a
    /// connection unable to carry a request.
    pub(super) fn problems(&self) -> Problems {
        let mut out = Problems::new();
        let mut bad = |key: &str, msg: &str| out.push((format!("http2.{key}"), msg.to_string()));
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            bad(
                "max-frame-size",
                "must be from 16384 to 16777215 (RFC 9113 §6.5.2)",
            );
        }
        for (key, w) in [
            ("initial-stream-window", self.initial_stream_window),
            ("initial-connection-window", self.initial_connection_window),
        ] {
            if w == 0 || w > MAX_WINDOW {
                bad(key, "must be from 1 to 2147483647 (RFC 9113 §6.9.1)");
            }
        }
        for (key, v) in [
            ("max-concurrent-streams", self.max_concurrent_streams),
            ("max-header-list-size", self.max_header_list_size),
            ("max-send-buffer", self.max_send_buffer),
            ("max-pending-reset-streams", self.max_pending_reset_streams),
            ("max-error-resets", self.max_error_resets),
            ("control-frame-rate", self.control_frame_rate),
        ] {
            if v == 0 {
                bad(key, "must be greater than 0");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{parse_str, GOOD};

    #[test]
    fn out_of_range_values_are_positioned() {
        let text =
            format!("{GOOD}[http2]\nmax-frame-size = 1024\ninitial-stream-window = 0\nmax-concurrent-streams = 0\n");
        let err = parse_str(&text).unwrap_err();
        let found: Vec<_> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.line))
            .collect();
        assert!(found.contains(&("http2.max-frame-size", 12)), "{err}");
        assert!(
            found.contains(&("http2.initial-stream-window", 13)),
            "{err}"
        );
        assert!(
            found.contains(&("http2.max-concurrent-streams", 14)),
            "{err}"
        );
        let ok = format!("{GOOD}[http2]\nmax-frame-size = 16777215\n");
        assert_eq!(parse_str(&ok).unwrap().http2.max_frame_size, 16_777_215);
    }
}
