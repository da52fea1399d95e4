//! Client certificates as backends learn of them: the request's fields of
//! the `[tls]` header names are removed when a client sends them, and set to
//! the verified identity's subject and fingerprint; routes see the fields as
//! the backend will (a forged subject cannot pick a route).
//!
//! Not for: verifying certificates or reading the identity (`crate::tls::client_auth`).

use crate::http1::edit::FieldEdits;
use crate::http1::request::Seen;
use crate::tls::client_auth::{Headers, Identity};

/// The edits for a request from a client with `id` (or none): the
/// client's own fields of these names go, the verified values come.
pub fn edits(h: &Headers, id: Option<&Identity>) -> FieldEdits {
    let mut e = FieldEdits::default();
    for (name, value) in [
        (&h.subject, id.map(|i| &i.subject)),
        (&h.fingerprint, id.map(|i| &i.fingerprint)),
    ] {
        match (name, value) {
            (Some(n), Some(v)) => e.set.push((n.clone(), v.clone())),
            (Some(n), None) => e.remove.push(n.clone()),
            (None, _) => {}
        }
    }
    e
}

/// Wraps a router so that it sees the request's fields as the backend will:
/// without the client's fields of `headers`' names, with the verified
/// identity's (a route matching on them cannot be fooled by a forged one).
pub fn route_as_sent<'h, R>(
    headers: Option<&'h Headers>,
    id: Option<&'h Identity>,
    route: R,
) -> impl FnOnce(&Seen<'_>) -> u32 + 'h
where
    R: FnOnce(&Seen<'_>) -> u32 + 'h,
{
    move |seen| {
        let Some(h) = headers.filter(|h| !h.is_empty()) else {
            return route(seen);
        };
        let mut fields: Vec<httparse::Header<'_>> = seen
            .headers
            .iter()
            .filter(|f| !h.names().any(|n| f.name.eq_ignore_ascii_case(n)))
            .copied()
            .collect();
        if let Some(id) = id {
            for (name, value) in [(&h.subject, &id.subject), (&h.fingerprint, &id.fingerprint)] {
                if let Some(name) = name {
                    fields.push(httparse::Header {
                        name,
                        value: value.as_bytes(),
                    });
                }
            }
        }
        route(&Seen {
            method: seen.method,
            host: seen.host,
            target: seen.target,
            headers: &fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_fields_go_and_verified_ones_come() {
        let h = Headers {
            subject: Some("x-client-subject".into()),
            fingerprint: None,
        };
        let mut head = b"GET / HTTP/1.1\r\nhost: a\r\nX-Client-Subject: CN=forged\r\n\r\n".to_vec();
        edits(&h, None).apply(&mut head);
        assert_eq!(head, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        let id = Identity {
            subject: "CN=alice".into(),
            fingerprint: "00".into(),
        };
        let mut head = b"GET / HTTP/1.1\r\nX-Client-Subject: CN=forged\r\n\r\n".to_vec();
        edits(&h, Some(&id)).apply(&mut head);
        assert_eq!(
            head,
            b"GET / HTTP/1.1\r\nx-client-subject: CN=alice\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn routes_see_the_fields_as_the_backend_gets_them() {
        let h = Headers {
            subject: Some("x-client-subject".into()),
            fingerprint: None,
        };
        let forged = [httparse::Header {
            name: "X-Client-Subject",
            value: b"CN=admin",
        }];
        let seen = Seen {
            method: "GET",
            host: None,
            target: "/",
            headers: &forged,
        };
        let values = |id: Option<&Identity>| {
            let mut got = Vec::new();
            route_as_sent(Some(&h), id, |s: &Seen<'_>| {
                got = s.headers.iter().map(|f| f.value.to_vec()).collect();
                0
            })(&seen);
            got
        };
        assert!(values(None).is_empty());
        let id = Identity {
            subject: "CN=alice".into(),
            fingerprint: "00".into(),
        };
        assert_eq!(values(Some(&id)), vec![b"CN=alice".to_vec()]);
    }
}
