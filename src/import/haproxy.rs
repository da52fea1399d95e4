//! `haproxy.cfg` to floatlb tables: the tokenizer (HAProxy's quoting rules), sections and
//! `defaults` inheritance, then one mapper per section kind. `acl` + `use_backend` become
//! `[[route]]` matchers; `backend` sections `[[pool]]`s; `bind` lines listeners.
//!
//! Not for: evaluating `.if` blocks, environment variables or sample fetches beyond the
//! handful a route matcher can express; those are reported, never guessed.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use super::toml_out::{inline, list, quote, Doc, Kind, Table};
use super::{ms_to_duration, Keys, Problem, Source, NOT_YET};

/// One configuration line, split into words.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub file: usize,
    pub line: usize,
    pub words: Vec<String>,
}

impl Line {
    fn text(&self) -> String {
        self.words.join(" ")
    }
    /// The words from the `i`th on (none past the end).
    fn rest(&self, i: usize) -> &[String] {
        self.words.get(i..).unwrap_or_default()
    }
    fn w(&self, i: usize) -> &str {
        self.words.get(i).map(|s| s.as_str()).unwrap_or("")
    }
}

/// Splits one line as HAProxy does: spaces separate words, `#` starts a comment, `\`
/// escapes the next character, `"..."` keeps spaces and escapes, `'...'` keeps everything.
pub(crate) fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            ' ' | '\t' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("a `\\` ends the line".into()),
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n) => cur.push(n),
                            None => return Err("unterminated `\"`".into()),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("unterminated `\"`".into()),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("unterminated `'`".into()),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "userlist",
    "peers",
    "resolvers",
    "cache",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "log-forward",
    "fcgi-app",
    "crt-store",
    "traces",
    "namespace_list",
    "dynamic-update",
];

/// A section: its header line and the lines under it.
#[derive(Debug, Clone)]
struct Section {
    head: Line,
    body: Vec<Line>,
}

impl Section {
    fn kind(&self) -> &str {
        self.head.w(0)
    }
    fn name(&self) -> &str {
        self.head.w(1)
    }
    /// `frontend x from defname`: the defaults section it names.
    fn from(&self) -> Option<&str> {
        let w = &self.head.words;
        w.iter()
            .position(|x| x == "from")
            .and_then(|i| w.get(i + 1))
            .map(|s| s.as_str())
    }
}

/// What a mapper reports into.
struct Ctx<'a> {
    files: &'a [Source],
    keys: Keys,
    problems: Vec<(usize, usize, Problem)>,
    mapped: usize,
    /// `resolve-prefer` of the servers: `[resolver] family`, one for the file.
    resolver_family: Option<String>,
}

impl Ctx<'_> {
    /// Reports `l` (or a part of it, `directive`) as not imported, into the problem list and
    /// into `notes`, the comments of the table it would have gone to.
    fn skip_part(&mut self, l: &Line, directive: &str, reason: &str, notes: &mut Vec<String>) {
        let p = Problem {
            file: self.files[l.file].name.clone(),
            line: l.line,
            directive: directive.to_string(),
            reason: reason.to_string(),
        };
        notes.push(format!("not imported: {p}"));
        self.problems.push((l.file, l.line, p));
    }
    fn skip(&mut self, l: &Line, reason: &str, notes: &mut Vec<String>) {
        self.skip_part(l, &l.text(), reason, notes);
    }
    fn ok(&mut self) {
        self.mapped += 1;
    }
}

/// Reads the files into sections; lines outside any section, `.if` blocks and unreadable
/// lines are reported.
fn sections(ctx: &mut Ctx<'_>, notes: &mut Vec<String>) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for (fi, src) in ctx.files.iter().enumerate() {
        let mut cond_depth = 0usize;
        let mut in_file_section = false;
        for (i, raw) in src.text.lines().enumerate() {
            let words = match tokenize(raw) {
                Ok(w) => w,
                Err(e) => {
                    let l = Line {
                        file: fi,
                        line: i + 1,
                        words: vec![raw.trim().to_string()],
                    };
                    ctx.skip(&l, &format!("cannot be read: {e}"), notes);
                    continue;
                }
            };
            if words.is_empty() {
                continue;
            }
            let l = Line {
                file: fi,
                line: i + 1,
                words,
            };
            let first = l.w(0);
            if first.starts_with('.') {
                match first {
                    ".if" => cond_depth += 1,
                    ".endif" => cond_depth = cond_depth.saturating_sub(1),
                    _ => {}
                }
                let why = if matches!(first, ".if" | ".elif" | ".else" | ".endif") {
                    "conditional blocks are not evaluated: the lines inside are reported, not imported"
                } else {
                    "a message or directive for HAProxy's own start-up"
                };
                ctx.skip(&l, why, notes);
                continue;
            }
            if cond_depth > 0 {
                ctx.skip(&l, "inside a `.if` block, which is not evaluated", notes);
                continue;
            }
            if SECTIONS.contains(&first) {
                out.push(Section {
                    head: l,
                    body: Vec::new(),
                });
                in_file_section = true;
                continue;
            }
            match out.last_mut() {
                Some(s) if in_file_section => s.body.push(l),
                _ => ctx.skip(&l, "outside any section", notes),
            }
        }
    }
    out
}

/// What `defaults` hands down to the proxies after it, and each proxy's own values.
#[derive(Debug, Clone, Default)]
struct Settings {
    mode_tcp: bool,
    /// `timeout <name>` in milliseconds.
    timeouts: BTreeMap<String, u64>,
    balance: Vec<(String, String)>,
    hash_consistent: bool,
    retries: Option<u32>,
    redispatch: bool,
    forwardfor: bool,
    forwarded: bool,
    /// An `X-Forwarded-Proto` edit: what `[proxy] x-forwarded-proto` does.
    xfp: bool,
    httplog: bool,
    /// `option httpchk` / `http-check` as `[health]` keys.
    health: Vec<(String, String)>,
    default_server: Vec<String>,
    errorfiles: Vec<(String, String)>,
    maxconn: Option<u64>,
    cookie: Option<String>,
}

/// HAProxy's time format: a number with `us`, `ms`, `s`, `m`, `h` or `d`, milliseconds when bare.
fn parse_time(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    match &s[split..] {
        "" | "ms" => Some(n),
        "us" => Some(n / 1000),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
}

/// The reason given for an option or directive floatlb has no counterpart for.
fn reason_for(words: &[String]) -> String {
    let w0 = words.first().map(|s| s.as_str()).unwrap_or("");
    let w1 = words.get(1).map(|s| s.as_str()).unwrap_or("");
    let r = match (w0, w1) {
        ("log", _) | ("log-format", _) | ("option", "tcplog") | ("log-tag", _) => {
            "floatlb logs to standard error and writes its access log as [log] says (access, access-path, format)"
        }
        ("option", "dontlognull") | ("option", "log-health-checks") | ("option", "dontlog-normal") => {
            "floatlb logs every request in its access log; no filter"
        }
        ("option", "http-server-close") | ("option", "httpclose") | ("option", "http-keep-alive") => {
            "floatlb keeps client and backend connections alive on its own terms ([timeouts] idle, pool-idle); no per-proxy connection mode"
        }
        ("option", "http-ignore-probes") | ("option", "socket-stats") | ("option", "prefer-last-server") | ("option", "abortonclose") | ("option", "http-no-delay") | ("option", "splice-auto") | ("option", "splice-request") | ("option", "splice-response") | ("option", "tcpka") | ("option", "clitcpka") | ("option", "srvtcpka") | ("option", "http-use-htx") | ("option", "nolinger") | ("option", "contstats") | ("option", "checkcache") | ("option", "http-pretend-keepalive") => {
            "no floatlb equivalent (connection handling is fixed)"
        }
        ("option", "allbackups") => "floatlb has no backup servers",
        ("stats", _) => "floatlb's status page and metrics are on the [admin] listener (/status, /metrics)",
        ("compression", _) => "floatlb does not compress answers",
        ("capture", _) | ("declare", _) | ("unique-id-format", _) | ("unique-id-header", _) => {
            "floatlb's access log has fixed fields ([log] format); no captures or unique ids"
        }
        ("stick-table", _) | ("stick", _) | ("tcp-request", _) => {
            "stick tables and tcp-request rules: write per-client limits as [[limit]] tables (docs/configuration.md)"
        }
        ("fullconn", _) | ("hash-balance-factor", _) => "floatlb has no dynamic maxconn",
        ("http-reuse", _) => "floatlb always reuses idle backend connections (pool-idle)",
        ("filter", _) => "floatlb has no filters",
        ("email-alert", _) => "floatlb sends no mail; alert on its metrics (grafana/alerts.yml)",
        ("server-template", _) => "server-template needs DNS resolution; list the servers as ip:port",
        ("use-server", _) | ("force-persist", _) | ("ignore-persist", _) => "floatlb picks a backend by the pool's scheduler or its sticky cookie only",
        ("description", _) | ("id", _) | ("enabled", _) | ("disabled", _) => "no floatlb equivalent",
        ("daemon", _) | ("user", _) | ("group", _) | ("uid", _) | ("gid", _) | ("chroot", _) | ("pidfile", _) | ("master-worker", _) | ("nbproc", _) => {
            "the process runs under systemd (packaging/): the unit sets user and sandbox"
        }
        ("http-request", _) | ("http-response", _) | ("http-after-response", _) => {
            return format!("`{w0} {w1}`: no floatlb counterpart for this action")
        }
        ("ca-base", _) | ("crt-base", _) => "floatlb takes whole paths: write them out in [tls]",
        _ if w0.starts_with("ssl-default") || w0.starts_with("ssl-") => "floatlb's TLS protocols and ciphers are fixed (Mozilla intermediate: TLS 1.2 and 1.3, AEAD only)",
        _ if w0.starts_with("tune.") => "no floatlb tunable for this",
        _ => "",
    };
    if r.is_empty() {
        if w0 == "option" || w0 == "no" {
            format!("no floatlb equivalent for `{} {}`", w0, w1)
        } else {
            format!("no floatlb equivalent for `{w0}`")
        }
    } else {
        r.to_string()
    }
}

/// Applies a directive every proxy kind (and `defaults`) may carry. Returns false when it
/// is not one of those.
fn common(s: &mut Settings, l: &Line, ctx: &mut Ctx<'_>, notes: &mut Vec<String>) -> bool {
    let w: Vec<&str> = l.words.iter().map(|x| x.as_str()).collect();
    match (w[0], w.get(1).copied().unwrap_or("")) {
        ("mode", m) => {
            match m {
                "http" => {
                    s.mode_tcp = false;
                    ctx.ok()
                }
                "tcp" => {
                    s.mode_tcp = true;
                    ctx.ok()
                }
                _ => ctx.skip(l, "unknown mode", notes),
            };
        }
        ("timeout", name) => {
            let known = [
                "connect",
                "server",
                "client",
                "http-request",
                "http-keep-alive",
                "queue",
                "tunnel",
                "check",
            ];
            match (known.contains(&name), w.get(2).and_then(|v| parse_time(v))) {
                (true, Some(ms)) => {
                    s.timeouts.insert(name.to_string(), ms);
                    ctx.ok();
                }
                (true, None) => ctx.skip(l, "not a time", notes),
                (false, _) => ctx.skip(l, "no floatlb timeout of that name", notes),
            }
        }
        ("balance", alg) => {
            let arg = w.get(2).copied();
            let b: Option<Vec<(&str, String)>> = match alg {
                "roundrobin" => Some(vec![("algorithm", quote("round-robin"))]),
                "static-rr" => Some(vec![("algorithm", quote("static-rr"))]),
                "leastconn" => Some(vec![("algorithm", quote("least-conn"))]),
                "first" => Some(vec![("algorithm", quote("first"))]),
                "source" => Some(vec![("algorithm", quote("source"))]),
                "uri" if arg.is_none() => Some(vec![("algorithm", quote("uri"))]),
                "url_param" if arg.is_some() && w.len() == 3 => Some(vec![
                    ("algorithm", quote("url-param")),
                    ("url-param", quote(arg.unwrap_or_default())),
                ]),
                "random" => Some(vec![("algorithm", quote("random"))]),
                a if a.starts_with("random(") => a
                    .trim_start_matches("random(")
                    .trim_end_matches(')')
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=16).contains(n))
                    .map(|n| vec![("algorithm", quote("random")), ("draws", n.to_string())]),
                a if a.starts_with("hdr(") && a.ends_with(')') => Some(vec![
                    ("algorithm", quote("header")),
                    ("header", quote(&a[4..a.len() - 1])),
                ]),
                "hash" if arg.is_some_and(|a| a.starts_with("req.cook(") && a.ends_with(')')) => {
                    let a = arg.unwrap_or_default();
                    Some(vec![
                        ("algorithm", quote("cookie")),
                        ("cookie", quote(&a[9..a.len() - 1])),
                    ])
                }
                _ => None,
            };
            match b {
                Some(b) => {
                    s.balance = b.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    ctx.ok();
                }
                None => ctx.skip(
                    l,
                    "no floatlb algorithm matches (docs/configuration.md [balance])",
                    notes,
                ),
            }
        }
        ("hash-type", t) => {
            s.hash_consistent = t == "consistent";
            if t == "consistent" || t == "map-based" {
                ctx.ok();
            } else {
                ctx.skip(l, "floatlb hashes map-based or consistent only", notes);
            }
        }
        ("retries", n) => match n.parse() {
            Ok(n) => {
                s.retries = Some(n);
                ctx.ok();
            }
            Err(_) => ctx.skip(l, "not a number", notes),
        },
        ("option", "tcp-check") if s.mode_tcp => {
            // floatlb checks a pool only TCP listeners use by a TCP connect.
            ctx.ok();
        }
        ("option", "redispatch") if w.len() == 2 => {
            s.redispatch = true;
            ctx.ok();
        }
        ("no", "option") if w.get(2) == Some(&"redispatch") => {
            s.redispatch = false;
            ctx.ok();
        }
        ("option", "forwardfor") if w.len() == 2 => {
            s.forwardfor = true;
            ctx.ok();
        }
        ("option", "forwardfor") => {
            s.forwardfor = true;
            ctx.skip_part(
                l,
                &l.text(),
                "mapped to x-forwarded-for = true, without its `except`/`header`/`if-none` arguments (floatlb always appends to X-Forwarded-For)",
                notes,
            );
        }
        ("option", "forwarded") => {
            s.forwarded = true;
            if w.len() == 2 {
                ctx.ok();
            } else {
                ctx.skip_part(l, &l.text(), "mapped to forwarded = true without its arguments (floatlb writes for= and proto=)", notes);
            }
        }
        ("option", "httplog") => {
            s.httplog = true;
            ctx.ok();
        }
        ("option", "httpchk") => {
            s.health.retain(|(k, _)| k != "method" && k != "path");
            // option httpchk [<method>] <uri> [<version>]
            let args: Vec<&str> = w.get(2..).unwrap_or_default().to_vec();
            match args.as_slice() {
                [] => {}
                [uri] => s.health.push(("path".into(), quote(uri))),
                [m, uri, ..] => {
                    s.health.push(("method".into(), quote(m)));
                    s.health.push(("path".into(), quote(uri)));
                }
            }
            if args.len() > 2 {
                ctx.skip_part(l, &l.text(), "the version and headers after the URI are not imported (floatlb checks with HTTP/1.1 and Host)", notes);
            } else {
                ctx.ok();
            }
            s.health.push(("_httpchk".into(), String::new()));
        }
        ("http-check", "send") => {
            let mut i = 2;
            let mut bad = Vec::new();
            while i < w.len() {
                match (w[i], w.get(i + 1)) {
                    ("meth", Some(m)) => set_kv(&mut s.health, "method", quote(m)),
                    ("uri", Some(u)) => set_kv(&mut s.health, "path", quote(u)),
                    ("hdr", Some(h))
                        if h.eq_ignore_ascii_case("host") && w.get(i + 2).is_some() =>
                    {
                        set_kv(&mut s.health, "host", quote(w[i + 2]));
                        i += 1;
                    }
                    ("ver", Some(v)) if v.eq_ignore_ascii_case("HTTP/1.1") => {}
                    ("hdr", Some(_)) => {
                        bad.push(format!("hdr {}", w[i + 1]));
                        i += 1;
                    }
                    (o, _) => bad.push(o.to_string()),
                }
                i += 2;
            }
            if bad.is_empty() {
                ctx.ok();
            } else {
                ctx.skip_part(
                    l,
                    &l.text(),
                    &format!(
                        "not imported: {} (floatlb's check sends only method, path and Host)",
                        bad.join(", ")
                    ),
                    notes,
                );
            }
        }
        ("http-check", "expect") => {
            let neg = w.get(2) == Some(&"!");
            let a = w.get(if neg { 3 } else { 2 }..).unwrap_or_default();
            match (neg, a) {
                (false, ["status", code]) => {
                    set_kv(&mut s.health, "expect-status", quote(code));
                    ctx.ok();
                }
                (false, ["string", text]) => {
                    set_kv(&mut s.health, "expect-body", quote(text));
                    ctx.ok();
                }
                (false, ["rstatus", re]) if re.trim_start_matches('^').trim_end_matches('$').chars().all(|c| c.is_ascii_digit()) => {
                    set_kv(&mut s.health, "expect-status", quote(re.trim_start_matches('^').trim_end_matches('$')));
                    ctx.ok();
                }
                _ => ctx.skip(l, "floatlb's check expects a status list (expect-status) or a string in the body (expect-body)", notes),
            }
        }
        ("http-check", "connect") | ("http-check", "comment") => ctx.skip(
            l,
            "floatlb's check always connects to the backend's own address and port",
            notes,
        ),
        ("default-server", _) => {
            s.default_server = w
                .get(1..)
                .unwrap_or_default()
                .iter()
                .map(|x| x.to_string())
                .collect();
            ctx.ok();
        }
        ("errorfile", code) => match (code.parse::<u16>(), w.get(2)) {
            (Ok(c), Some(f)) if (400..=599).contains(&c) => {
                s.errorfiles.retain(|(k, _)| k != code);
                s.errorfiles.push((code.to_string(), f.to_string()));
                ctx.ok();
            }
            _ => ctx.skip(l, "floatlb's error pages are for statuses 400..=599", notes),
        },
        ("maxconn", n) => match n.parse() {
            Ok(n) => {
                s.maxconn = Some(n);
                ctx.ok();
            }
            Err(_) => ctx.skip(l, "not a number", notes),
        },
        ("cookie", name) if !name.is_empty() => {
            let mut mode = "insert";
            let mut attrs = Vec::new();
            let mut bad = Vec::new();
            let mut i = 2;
            while i < w.len() {
                match w[i] {
                    "insert" => mode = "insert",
                    "prefix" => mode = "prefix",
                    "httponly" => attrs.push("HttpOnly".to_string()),
                    "secure" => attrs.push("Secure".to_string()),
                    "domain" if i + 1 < w.len() => {
                        attrs.push(format!("Domain={}", w[i + 1]));
                        i += 1;
                    }
                    "attr" if i + 1 < w.len() => {
                        attrs.push(w[i + 1].to_string());
                        i += 1;
                    }
                    "maxidle" | "maxlife" | "dynamic" if i + 1 < w.len() || w[i] == "dynamic" => {
                        bad.push(w[i].to_string());
                        if w[i] != "dynamic" {
                            i += 1;
                        }
                    }
                    o => bad.push(o.to_string()),
                }
                i += 1;
            }
            let mut e = vec![("name".to_string(), quote(name))];
            if mode == "prefix" {
                e.push(("mode".into(), quote("prefix")));
            } else {
                e.push(("attributes".into(), quote(&attrs.join("; "))));
            }
            s.cookie = Some(inline(&e));
            if bad.is_empty() {
                ctx.ok();
            } else {
                ctx.skip_part(
                    l,
                    &l.text(),
                    &format!(
                        "imported as `cookie` without: {} (floatlb passes the client's cookie on as sent, sets no Cache-Control and no cookie expiry)",
                        bad.join(", ")
                    ),
                    notes,
                );
            }
        }
        _ => return false,
    }
    true
}

fn set_kv(v: &mut Vec<(String, String)>, k: &str, val: String) {
    v.retain(|(x, _)| x != k);
    v.push((k.to_string(), val));
}

/// A route matcher made from ACLs, ANDed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Match {
    host: Vec<String>,
    path: Vec<String>,
    path_prefix: Vec<String>,
    path_regex: Option<String>,
    method: Vec<String>,
    headers: Vec<String>,
    query: Vec<String>,
    source: Vec<String>,
    /// `!{ ssl_fc }`: the request came in cleartext.
    cleartext: bool,
}

/// One ACL term before ANDing: what it adds to a route.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Host(Vec<String>),
    Path(Vec<String>),
    PathPrefix(Vec<String>),
    PathRegex(String),
    Method(Vec<String>),
    /// A rendered `{ name, equals|regex }` condition.
    Header(String),
    Query(String),
    Source(Vec<String>),
    Cleartext,
}

fn regex_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn cond(name: &str, equals: Option<&str>, regex: Option<&str>) -> String {
    let mut e = vec![("name".to_string(), quote(name))];
    if let Some(v) = equals {
        e.push(("equals".into(), quote(v)));
    }
    if let Some(r) = regex {
        e.push(("regex".into(), quote(r)));
    }
    inline(&e)
}

/// An ACL's criterion, flags and values to a term floatlb can match, or why not.
fn acl_term(words: &[String]) -> Result<Term, String> {
    let crit = words.first().map(|s| s.as_str()).unwrap_or("");
    let mut ci = false;
    let mut method: Option<String> = None;
    let mut vals: Vec<String> = Vec::new();
    let mut i = 1;
    let mut flags_done = false;
    while i < words.len() {
        let a = words[i].as_str();
        if !flags_done && a.starts_with('-') && a.len() > 1 {
            match a {
                "-i" => ci = true,
                "-m" => {
                    method = words.get(i + 1).cloned();
                    i += 1;
                }
                "--" => flags_done = true,
                "-f" => return Err("values from a file (-f): write them inline".into()),
                o => return Err(format!("ACL flag {o} not supported")),
            }
        } else {
            flags_done = true;
            vals.push(a.to_string());
        }
        i += 1;
    }
    let (fetch, conv) = match crit.split_once(',') {
        Some((f, c)) => (f, Some(c)),
        None => (crit, None),
    };
    // `req.hdr(host),field(1,:)`: the host without its port, as floatlb compares it.
    let host_port_stripped = conv == Some("field(1,:)");
    if conv.is_some() && !host_port_stripped {
        return Err(format!(
            "converter `{}` not supported",
            conv.unwrap_or_default()
        ));
    }
    let header_of = |f: &str| -> Option<(String, String)> {
        let (base, rest) = f.split_once('(')?;
        let name = rest.strip_suffix(')')?;
        let name = name.split(',').next()?.to_string();
        Some((base.to_string(), name))
    };
    let ci_re = |r: String| if ci { format!("(?i){r}") } else { r };
    let m = |default: &str| method.clone().unwrap_or_else(|| default.to_string());
    if vals.is_empty() && !matches!(method.as_deref(), Some("found")) && fetch != "ssl_fc" {
        return Err("an ACL without values".into());
    }
    let alt = |vs: &[String], f: &dyn Fn(&str) -> String| -> String {
        let parts: Vec<String> = vs.iter().map(|v| f(v)).collect();
        if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("(?:{})", parts.join("|"))
        }
    };
    match fetch {
        "ssl_fc" => Ok(Term::Cleartext),
        "path" | "path_beg" | "path_end" | "path_reg" | "path_sub" | "path_dir" | "url_beg" => {
            let kind = match fetch {
                "path" => m("str"),
                "url_beg" => "beg".into(),
                f => f[5..].to_string(),
            };
            if vals.iter().any(|v| !v.starts_with('/')) && (kind == "str" || kind == "beg") {
                return Err("a path that does not start with /".into());
            }
            match (kind.as_str(), ci) {
                ("str", false) => Ok(Term::Path(vals)),
                ("beg", false) => Ok(Term::PathPrefix(vals)),
                ("str", true) => Ok(Term::PathRegex(ci_re(format!(
                    "^{}$",
                    alt(&vals, &|v| regex_escape(v))
                )))),
                ("beg", true) => Ok(Term::PathRegex(ci_re(format!(
                    "^{}",
                    alt(&vals, &|v| regex_escape(v))
                )))),
                ("end", _) => Ok(Term::PathRegex(ci_re(format!(
                    "{}$",
                    alt(&vals, &|v| regex_escape(v))
                )))),
                ("sub", _) => Ok(Term::PathRegex(ci_re(alt(&vals, &|v| regex_escape(v))))),
                ("reg", _) => Ok(Term::PathRegex(ci_re(alt(&vals, &|v| v.to_string())))),
                ("dir", _) => Ok(Term::PathRegex(ci_re(format!(
                    "(?:^|/){}(?:/|$)",
                    alt(&vals, &|v| regex_escape(v))
                )))),
                (k, _) => Err(format!("path match -m {k} not supported")),
            }
        }
        "method" => Ok(Term::Method(vals)),
        "src" => {
            for v in &vals {
                let ip = v.split('/').next().unwrap_or("");
                if ip.parse::<IpAddr>().is_err() {
                    return Err(format!("{v} is not an address or range"));
                }
            }
            Ok(Term::Source(vals))
        }
        _ => {
            let Some((base, name)) = header_of(fetch) else {
                return Err(format!("fetch `{crit}` has no floatlb matcher"));
            };
            let kind = match base.as_str() {
                "hdr" | "req.hdr" | "req.fhdr" | "fhdr" | "url_param" | "urlp" => m("str"),
                b if b.starts_with("hdr_") => b[4..].to_string(),
                b => return Err(format!("fetch `{b}()` has no floatlb matcher")),
            };
            let query = base == "url_param" || base == "urlp";
            let is_host = !query && name.eq_ignore_ascii_case("host");
            if is_host {
                match kind.as_str() {
                    "str" => {
                        return Ok(Term::Host(vals.iter().map(|v| v.to_lowercase()).collect()))
                    }
                    "end" if vals.iter().all(|v| v.starts_with('.')) => {
                        return Ok(Term::Host(
                            vals.iter()
                                .map(|v| format!("*{}", v.to_lowercase()))
                                .collect(),
                        ))
                    }
                    "dom" => {
                        let mut h = Vec::new();
                        for v in &vals {
                            h.push(v.to_lowercase());
                            h.push(format!("*.{}", v.to_lowercase()));
                        }
                        return Ok(Term::Host(h));
                    }
                    _ => {}
                }
            }
            let re = match kind.as_str() {
                "found" => None,
                "str" if vals.len() == 1 && !ci => {
                    let c = cond(&name, Some(&vals[0]), None);
                    return Ok(if query {
                        Term::Query(c)
                    } else {
                        Term::Header(c)
                    });
                }
                "str" => Some(format!("^{}$", alt(&vals, &|v| regex_escape(v)))),
                "beg" => Some(format!("^{}", alt(&vals, &|v| regex_escape(v)))),
                "end" => Some(format!("{}$", alt(&vals, &|v| regex_escape(v)))),
                "sub" => Some(alt(&vals, &|v| regex_escape(v))),
                "reg" => Some(alt(&vals, &|v| v.to_string())),
                k => return Err(format!("match -m {k} not supported on a field")),
            };
            let re = re.map(ci_re);
            let c = cond(&name, None, re.as_deref());
            Ok(if query {
                Term::Query(c)
            } else {
                Term::Header(c)
            })
        }
    }
}

impl Match {
    fn add(&mut self, t: &Term) -> Result<(), String> {
        let one_path =
            |m: &Match| !m.path.is_empty() || !m.path_prefix.is_empty() || m.path_regex.is_some();
        match t {
            Term::Host(h) if self.host.is_empty() => self.host = h.clone(),
            Term::Method(v) if self.method.is_empty() => self.method = v.clone(),
            Term::Source(v) if self.source.is_empty() => self.source = v.clone(),
            Term::Path(v) if !one_path(self) => self.path = v.clone(),
            Term::PathPrefix(v) if !one_path(self) => self.path_prefix = v.clone(),
            Term::PathRegex(v) if !one_path(self) => self.path_regex = Some(v.clone()),
            Term::Header(c) => self.headers.push(c.clone()),
            Term::Query(c) => self.query.push(c.clone()),
            Term::Cleartext => self.cleartext = true,
            _ => return Err("two conditions on the same part of the request, ANDed: a floatlb route has one matcher of each kind".into()),
        }
        Ok(())
    }

    fn write(&self, t: &mut Table) {
        if !self.host.is_empty() {
            t.set("host", list(&self.host));
        }
        if !self.path.is_empty() {
            t.set("path", list(&self.path));
        }
        if !self.path_prefix.is_empty() {
            t.set("path-prefix", list(&self.path_prefix));
        }
        if let Some(r) = &self.path_regex {
            t.set("path-regex", quote(r));
        }
        if !self.method.is_empty() {
            t.set("method", list(&self.method));
        }
        if !self.headers.is_empty() {
            t.set("headers", format!("[{}]", self.headers.join(", ")));
        }
        if !self.query.is_empty() {
            t.set("query", format!("[{}]", self.query.join(", ")));
        }
        if !self.source.is_empty() {
            t.set("source", list(&self.source));
        }
    }
}

/// A proxy's ACLs: name to the terms it ORs (an ACL written twice ORs both).
type Acls = HashMap<String, Vec<Result<Term, String>>>;

fn acl_defined(acls: &mut Acls, l: &Line) -> Result<(), String> {
    let name = l.w(1).to_string();
    let t = acl_term(l.rest(2));
    let err = t.as_ref().err().cloned();
    acls.entry(name).or_default().push(t);
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `if|unless cond...` (from `words`) to the matchers of the routes it needs (one per ORed
/// alternative), or why it cannot be matched.
fn condition(words: &[String], acls: &Acls) -> Result<Vec<Match>, String> {
    let Some(kw) = words.first() else {
        return Ok(vec![Match::default()]);
    };
    if kw == "unless" {
        return Err("`unless`: floatlb routes have no negation".into());
    }
    if kw != "if" {
        return Err(format!("unexpected `{kw}`"));
    }
    // Alternatives of ANDed terms; each term is itself an OR of choices.
    let mut alts: Vec<Vec<Vec<Term>>> = vec![Vec::new()];
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        if w == "||" || w == "or" {
            alts.push(Vec::new());
            i += 1;
            continue;
        }
        let (neg, w) = match w.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, w),
        };
        let choices: Vec<Term> =
            if w == "{" || w.is_empty() && words.get(i + 1).map(|s| s.as_str()) == Some("{") {
                if w.is_empty() {
                    i += 1;
                }
                let end = words[i..]
                    .iter()
                    .position(|x| x == "}")
                    .ok_or("an anonymous ACL without its closing }")?;
                let t = acl_term(&words[i + 1..i + end])?;
                i += end;
                vec![t]
            } else {
                let terms: Vec<Result<Term, String>> = match w {
                    "METH_GET" => vec![Ok(Term::Method(vec!["GET".into(), "HEAD".into()]))],
                    "METH_POST" => vec![Ok(Term::Method(vec!["POST".into()]))],
                    "METH_PUT" => vec![Ok(Term::Method(vec!["PUT".into()]))],
                    "METH_DELETE" => vec![Ok(Term::Method(vec!["DELETE".into()]))],
                    "METH_OPTIONS" => vec![Ok(Term::Method(vec!["OPTIONS".into()]))],
                    "TRUE" => Vec::new(),
                    _ => acls
                        .get(w)
                        .cloned()
                        .ok_or_else(|| format!("no acl named {w}"))?,
                };
                let mut ok = Vec::new();
                for t in terms {
                    ok.push(t.map_err(|e| format!("acl {w}: {e}"))?);
                }
                ok
            };
        if neg {
            if choices == [Term::Cleartext] {
                alts.last_mut().expect("one").push(vec![Term::Cleartext]);
                i += 1;
                continue;
            }
            return Err("a negated ACL (`!`): floatlb routes have no negation".into());
        }
        if choices == [Term::Cleartext] {
            return Err("`ssl_fc` (TLS only): route by listener instead".into());
        }
        if !choices.is_empty() {
            alts.last_mut().expect("one").push(choices);
        }
        i += 1;
    }
    let mut out = Vec::new();
    for alt in alts {
        // Each term's choices multiply out, unless they merge into one matcher.
        let mut ms = vec![Match::default()];
        for choices in alt {
            let merged = merge_choices(&choices);
            let mut next = Vec::new();
            for m in &ms {
                for c in &merged {
                    let mut m2 = m.clone();
                    m2.add(c)?;
                    next.push(m2);
                }
            }
            ms = next;
            if ms.len() > 16 {
                return Err("more than 16 routes would be needed for this condition".into());
            }
        }
        out.extend(ms);
    }
    Ok(out)
}

/// ORed choices of one kind become one term (hosts, paths, methods: lists ORed in floatlb).
fn merge_choices(choices: &[Term]) -> Vec<Term> {
    let mut out: Vec<Term> = Vec::new();
    for c in choices {
        let merged = match (out.last_mut(), c) {
            (Some(Term::Host(a)), Term::Host(b))
            | (Some(Term::Path(a)), Term::Path(b))
            | (Some(Term::PathPrefix(a)), Term::PathPrefix(b))
            | (Some(Term::Method(a)), Term::Method(b))
            | (Some(Term::Source(a)), Term::Source(b)) => {
                a.extend(b.iter().cloned());
                true
            }
            _ => false,
        };
        if !merged {
            out.push(c.clone());
        }
    }
    out
}

/// Field edits of a proxy (`http-request` / `http-response` set/add/del-header).
#[derive(Debug, Clone, Default)]
struct Edits {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl Edits {
    fn merge(&self, later: &Edits) -> Edits {
        let mut e = self.clone();
        for (k, v) in &later.set {
            e.add.retain(|(x, _)| !x.eq_ignore_ascii_case(k));
            set_kv(&mut e.set, k, v.clone());
        }
        for (k, v) in &later.add {
            if !e.add.iter().any(|(x, _)| x.eq_ignore_ascii_case(k)) {
                e.add.push((k.clone(), v.clone()));
            }
        }
        for r in &later.remove {
            e.set.retain(|(x, _)| !x.eq_ignore_ascii_case(r));
            e.add.retain(|(x, _)| !x.eq_ignore_ascii_case(r));
            e.remove.push(r.clone());
        }
        e
    }
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
    fn render(&self) -> String {
        let map = |v: &[(String, String)]| {
            inline(
                &v.iter()
                    .map(|(k, x)| (k.clone(), quote(x)))
                    .collect::<Vec<_>>(),
            )
        };
        let mut e = Vec::new();
        if !self.set.is_empty() {
            e.push(("set".to_string(), map(&self.set)));
        }
        if !self.add.is_empty() {
            e.push(("add".to_string(), map(&self.add)));
        }
        if !self.remove.is_empty() {
            e.push(("remove".to_string(), list(&self.remove)));
        }
        inline(&e)
    }
}

/// `http-request set-header|add-header X-Forwarded-Proto http|https [if|unless {ssl_fc}]`:
/// what floatlb's own `x-forwarded-proto` writes.
fn is_xfp_rule(w: &[String]) -> bool {
    let ssl_cond = |c: &[String]| {
        let c: Vec<&str> = c.iter().map(|x| x.as_str()).collect();
        matches!(
            c.as_slice(),
            [] | ["if", "{", "ssl_fc", "}"]
                | ["if", "!{", "ssl_fc", "}"]
                | ["unless", "{", "ssl_fc", "}"]
        )
    };
    w.len() >= 4
        && w[0] == "http-request"
        && matches!(w[1].as_str(), "set-header" | "add-header")
        && w[2].eq_ignore_ascii_case("x-forwarded-proto")
        && matches!(w[3].as_str(), "http" | "https")
        && ssl_cond(&w[4..])
}

const FLOATLB_OWNS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// `http-request|http-response set-header|add-header|del-header NAME [VALUE]` into `e`;
/// Err with the reason when it cannot be.
fn header_rule(w: &[String], e: &mut Edits) -> Result<(), String> {
    let action = w.get(1).map(|s| s.as_str()).unwrap_or("");
    let name = w.get(2).cloned().ok_or("no field name")?;
    let lname = name.to_ascii_lowercase();
    if FLOATLB_OWNS.contains(&lname.as_str()) {
        return Err(
            "floatlb writes this field itself (framing and hop-by-hop fields cannot be edited)"
                .into(),
        );
    }
    let rest_at = if action == "del-header" { 3 } else { 4 };
    if w.len() > rest_at {
        return Err(format!(
            "`{}`: conditional or extended header edits are not supported (a floatlb route's edits apply to every request it takes)",
            w[rest_at..].join(" ")
        ));
    }
    if ["x-forwarded-for", "forwarded"].contains(&lname.as_str()) {
        return Err("floatlb applies route edits after adding its own forwarding fields, so this would change floatlb's as well: set [proxy] x-forwarded-for / forwarded instead".into());
    }
    match action {
        "del-header" => e.remove.push(name),
        "set-header" | "add-header" => {
            let v = w.get(3).cloned().ok_or("no value")?;
            if v.contains('%') {
                return Err("a log-format value (%[...]): floatlb sets fixed values".into());
            }
            let v = v.trim().to_string();
            if v.is_empty() {
                return Err("an empty value".into());
            }
            if action == "set-header" {
                set_kv(&mut e.set, &name, v);
            } else if e.add.iter().any(|(x, _)| x.eq_ignore_ascii_case(&name)) {
                return Err(
                    "a second add-header of one field: floatlb adds one line per name".into(),
                );
            } else {
                e.add.push((name, v));
            }
        }
        _ => return Err("not a header edit".into()),
    }
    Ok(())
}

/// A pool made from a backend, and what routes to it need to know.
struct PoolOut {
    table: Table,
    edits_req: Edits,
    edits_resp: Edits,
    /// Written as comments: it has no backend floatlb can reach.
    empty: bool,
    /// `option forwardfor` / `option forwarded` held for it.
    forwardfor: bool,
    forwarded: bool,
    xfp: bool,
}

/// A listener made from a `bind` line.
#[derive(Debug, Clone)]
struct Bind {
    frontend: String,
    address: SocketAddr,
    tls: bool,
    crt: Vec<String>,
    alpn: Option<Vec<String>>,
    accept_proxy: bool,
    notes: Vec<String>,
    /// A `mode tcp` frontend's bind: the pool and the SNI entries its connections go to.
    tcp: Option<TcpTarget>,
}

/// Where a TCP listener's connections go: its `pool`, and `sni` name to pool.
type TcpTarget = (Option<String>, Vec<(String, String)>);

fn parse_addr(a: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let a = a
        .trim_start_matches("ipv4@")
        .trim_start_matches("ipv6@")
        .trim_start_matches("tcp@")
        .trim_start_matches("tcp4@")
        .trim_start_matches("tcp6@");
    if a.contains('@') || a.starts_with('/') {
        return Err("not an IP socket: floatlb listens and connects over TCP/IP only".into());
    }
    if let Ok(s) = a.parse::<SocketAddr>() {
        return Ok(s);
    }
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, p),
        _ if a.parse::<IpAddr>().is_ok() => match default_port {
            Some(p) => return Ok(SocketAddr::new(a.parse().expect("checked"), p)),
            None => return Err("no port: HAProxy then uses the port the client connected to; floatlb needs ip:port".into()),
        },
        _ => {
            return Err(if a.contains('-') && a.rsplit_once(':').is_some() {
                "a port range: floatlb listens on one port per listener".into()
            } else {
                format!("{a:?} is a name or has no port: floatlb takes ip:port (resolve the name and write its address)")
            })
        }
    };
    let port: u16 = port.parse().map_err(|_| "port out of range".to_string())?;
    let ip: IpAddr = match host {
        "" | "*" | "0.0.0.0" => IpAddr::from([0, 0, 0, 0]),
        "::" | "[::]" => IpAddr::from([0u16; 8]),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{h:?} is a name, not an address: floatlb takes ip:port (resolve the name and write its address)"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `name:port` when `a` is a DNS name with a port (floatlb's backends by name).
fn host_port(a: &str) -> Option<String> {
    let a = a.trim_start_matches("ipv4@").trim_start_matches("ipv6@");
    let (host, port) = a.rsplit_once(':')?;
    port.parse::<u16>().ok().filter(|p| *p > 0)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let host = host.trim_end_matches('.');
    let ok = host.len() <= 253
        && host.split('.').all(label_ok)
        && host.chars().any(|c| c.is_ascii_alphabetic());
    ok.then(|| format!("{host}:{port}"))
}

/// Options of a `bind` line that take an argument.
const BIND_ARGS: &[&str] = &[
    "crt",
    "alpn",
    "name",
    "ca-file",
    "verify",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "interface",
    "maxconn",
    "process",
    "thread",
    "backlog",
    "mss",
    "id",
    "crt-list",
    "crl-file",
    "curves",
    "ecdhe",
    "npn",
    "nice",
    "tcp-ut",
    "level",
    "severity-output",
    "mode",
    "user",
    "group",
    "uid",
    "gid",
    "namespace",
    "proto",
    "sigalgs",
    "client-sigalgs",
    "ca-verify-file",
    "ca-ignore-err",
    "crt-ignore-err",
    "accept-netscaler-cip",
    "quic-cc-algo",
    "shards",
    "label",
    "idle-ping",
];

fn bind(l: &Line, frontend: &str, ctx: &mut Ctx<'_>, notes: &mut Vec<String>) -> Vec<Bind> {
    let mut out = Vec::new();
    let mut b_notes = Vec::new();
    let mut tls = false;
    let mut crt = Vec::new();
    let mut alpn = None;
    let mut accept_proxy = false;
    let mut i = 2;
    let mut bad = false;
    while i < l.words.len() {
        let o = l.w(i);
        let arg = l.words.get(i + 1).cloned();
        match o {
            "ssl" => tls = true,
            "crt" if arg.is_some() => crt.push(arg.clone().unwrap_or_default()),
            "alpn" if arg.is_some() => {
                alpn = Some(
                    arg.clone()
                        .unwrap_or_default()
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "name" => {}
            "accept-proxy" => accept_proxy = true,
            "v4v6" | "v6only" => {}
            _ => {
                let a = if BIND_ARGS.contains(&o) {
                    format!(" {}", arg.clone().unwrap_or_default())
                } else {
                    String::new()
                };
                let why = match o {
                    "crt-list" => "floatlb takes certificates one by one in [[tls.certificate]]",
                    "verify" | "ca-file" => "floatlb does not ask clients for certificates",
                    "ciphers" | "ciphersuites" | "ssl-min-ver" | "ssl-max-ver" | "curves"
                    | "no-sslv3" | "no-tlsv10" | "no-tlsv11" | "no-tls-tickets" => {
                        "floatlb's TLS protocols and ciphers are fixed (TLS 1.2 and 1.3, AEAD only)"
                    }
                    "transparent" => "floatlb binds with IP_FREEBIND, not transparent proxying",
                    _ => "bind option not supported",
                };
                ctx.skip_part(l, &format!("bind {} {o}{a}", l.w(1)), why, &mut b_notes);
                bad = true;
            }
        }
        if BIND_ARGS.contains(&o) {
            i += 1;
        }
        i += 1;
    }
    if accept_proxy && !ctx.keys.listen_accept_proxy {
        ctx.skip_part(
            l,
            &format!("bind {} accept-proxy", l.w(1)),
            NOT_YET,
            &mut b_notes,
        );
        bad = true;
    }
    for a in l.w(1).split(',') {
        match parse_addr(a, None) {
            Ok(address) => out.push(Bind {
                frontend: frontend.to_string(),
                address,
                tls,
                crt: crt.clone(),
                alpn: alpn.clone(),
                accept_proxy: accept_proxy && ctx.keys.listen_accept_proxy,
                notes: std::mem::take(&mut b_notes),
                tcp: None,
            }),
            Err(e) => {
                ctx.skip_part(l, &format!("bind {a}"), &e, notes);
                bad = true;
            }
        }
    }
    notes.append(&mut b_notes);
    if !bad {
        ctx.ok();
    }
    out
}

/// Options of a `server` line that take an argument.
const SERVER_ARGS: &[&str] = &[
    "weight",
    "maxconn",
    "minconn",
    "cookie",
    "inter",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "port",
    "addr",
    "sni",
    "verify",
    "ca-file",
    "crt",
    "crl-file",
    "alpn",
    "proto",
    "slowstart",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "resolvers",
    "resolve-prefer",
    "resolve-net",
    "init-addr",
    "id",
    "maxqueue",
    "error-limit",
    "observe",
    "source",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "check-sni",
    "check-proto",
    "check-alpn",
    "track",
    "agent-port",
    "agent-inter",
    "agent-send",
    "agent-addr",
    "pool-max-conn",
    "pool-purge-delay",
    "pool-low-conn",
    "max-reuse",
    "namespace",
    "tcp-ut",
    "ws",
    "redir",
    "log-proto",
    "set-proxy-v2-tlv-fmt",
    "curves",
    "sigalgs",
    "client-sigalgs",
    "npn",
    "usesrc",
    "socks4",
    "hash-key",
    "guid",
    "log-bufsize",
    "shard",
];

/// A backend section to a pool.
/// In a `listen` section, the lines its backend half (the pool) takes.
fn backend_line(l: &Line) -> bool {
    let w0 = l.w(0);
    matches!(
        w0,
        "server"
            | "balance"
            | "hash-type"
            | "cookie"
            | "default-server"
            | "http-check"
            | "retries"
            | "fullconn"
            | "http-reuse"
            | "server-template"
            | "use-server"
            | "hash-balance-factor"
    ) || w0 == "option"
        && matches!(
            l.w(1),
            "httpchk" | "redispatch" | "allbackups" | "prefer-last-server"
        )
        || w0 == "no" && l.w(2) == "redispatch"
        || w0 == "timeout" && matches!(l.w(1), "connect" | "server" | "queue" | "check")
}

fn pool(
    name: &str,
    s: &Settings,
    lines: &[Line],
    listen: bool,
    acls: &mut Acls,
    ctx: &mut Ctx<'_>,
) -> PoolOut {
    let mut t = Table::new(Kind::Pool, "[[pool]]");
    t.set("name", quote(name));
    let mut edits_req = Edits::default();
    let mut edits_resp = Edits::default();
    let mut s = s.clone();
    let mut servers = Vec::new();
    for l in lines {
        if listen && !backend_line(l) {
            // The frontend half reports these; only their settings matter here.
            let mut scratch = Ctx {
                files: ctx.files,
                keys: ctx.keys,
                problems: Vec::new(),
                mapped: 0,
                resolver_family: None,
            };
            common(&mut s, l, &mut scratch, &mut Vec::new());
            continue;
        }
        if common(&mut s, l, ctx, &mut t.comments) {
            continue;
        }
        match l.w(0) {
            "server" => servers.push(l.clone()),
            "acl" => {
                if let Err(e) = acl_defined(acls, l) {
                    ctx.skip(l, &e, &mut t.comments);
                } else {
                    ctx.ok();
                }
            }
            "http-request" if is_xfp_rule(&l.words) => {
                s.xfp = true;
                ctx.ok();
            }
            "http-request" | "http-response" | "http-after-response"
                if matches!(l.w(1), "set-header" | "add-header" | "del-header") =>
            {
                let e = if l.w(0) == "http-request" { &mut edits_req } else { &mut edits_resp };
                match header_rule(&l.words, e) {
                    Ok(()) => ctx.ok(),
                    Err(r) => ctx.skip(l, &r, &mut t.comments),
                }
            }
            "http-request" | "http-response" | "redirect" => ctx.skip(
                l,
                "in a backend: floatlb's redirects, denies and answers are routes; write it in the frontend",
                &mut t.comments,
            ),
            "option" if l.w(1) == "forwardfor" => {}
            _ => ctx.skip(l, &reason_for(&l.words), &mut t.comments),
        }
    }
    // Server lines, with `default-server` options first.
    let mut health_opts: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut checked = 0;
    let mut any_maxconn = false;
    // Per server: (TLS on, its tls keys, send-proxy version, h2): pool keys in floatlb.
    type Transport = (bool, Vec<(String, String)>, Option<String>, bool);
    let mut transports: Vec<(Line, Transport)> = Vec::new();
    let mut backends = Vec::new();
    for l in &servers {
        let sname = l.w(1).to_string();
        let mut words: Vec<String> = s.default_server.clone();
        words.extend(l.words.iter().skip(3).cloned());
        let mut b = Table::new(Kind::Pool, "[[pool.backend]]");
        b.set("name", quote(&sname));
        let mut ok = true;
        let mut check = false;
        let mut ssl = false;
        let mut tls_opts: Vec<(String, String)> = Vec::new();
        let mut send_proxy: Option<String> = None;
        let mut h2 = false;
        let mut i = 0;
        let mut part_notes = Vec::new();
        while i < words.len() {
            let o = words[i].as_str();
            let arg = words.get(i + 1).cloned().unwrap_or_default();
            let mut unmapped: Option<String> = None;
            match o {
                "check" => check = true,
                "no-check" => check = false,
                "weight" => match arg.parse::<u32>() {
                    Ok(w) if w <= 256 => b.set("weight", w.to_string()),
                    _ => unmapped = Some("weight out of floatlb's range 0..=256".into()),
                },
                "maxconn" => match arg.parse::<u32>() {
                    Ok(m) => {
                        any_maxconn |= m > 0;
                        b.set("maxconn", m.to_string());
                    }
                    _ => unmapped = Some("not a number".into()),
                },
                "cookie" => b.set("cookie", quote(&arg)),
                "inter" | "rise" | "fall" | "slowstart" => {
                    let key: &'static str = match o {
                        "inter" => "interval",
                        "slowstart" => "slow-start",
                        "rise" => "rise",
                        _ => "fall",
                    };
                    let v = if key == "interval" || key == "slow-start" {
                        parse_time(&arg).map(|ms| quote(&ms_to_duration(ms)))
                    } else {
                        arg.parse::<u32>().ok().filter(|n| *n > 0).map(|n| n.to_string())
                    };
                    match v {
                        Some(v) => match health_opts.get(key) {
                            Some(old) if *old != v => {
                                unmapped = Some(format!("floatlb checks a pool's backends alike: {key} {old} of an earlier server is kept"))
                            }
                            _ => {
                                health_opts.insert(key, v);
                            }
                        },
                        None => unmapped = Some("not a time or count".into()),
                    }
                }
                "ssl" => ssl = true,
                "no-ssl" => ssl = false,
                "verify" | "sni" | "ca-file" | "crt" => {
                    if ctx.keys.pool_tls {
                        let (k, v) = match o {
                            "verify" => ("verify", (arg != "none").to_string()),
                            "sni" => (
                                "server-name",
                                quote(arg.strip_prefix("str(").and_then(|x| x.strip_suffix(')')).unwrap_or(&arg)),
                            ),
                            "ca-file" => ("ca", quote(&arg)),
                            _ => ("cert", quote(&arg)),
                        };
                        if o == "sni" && arg == "req.hdr(host)" {
                            // floatlb's default server name is the request's Host.
                        } else if o == "sni" && !arg.starts_with("str(") {
                            unmapped = Some("sni from a sample fetch: floatlb takes a fixed server-name".into());
                        } else {
                            set_kv(&mut tls_opts, k, v);
                            if o == "crt" {
                                set_kv(&mut tls_opts, "key", quote(&arg));
                            }
                        }
                    } else {
                        unmapped = Some(format!("TLS to backends: {NOT_YET}"));
                    }
                }
                "send-proxy" | "send-proxy-v2" => {
                    let v = if o == "send-proxy" { "v1" } else { "v2" };
                    if ctx.keys.pool_send_proxy {
                        send_proxy = Some(quote(v));
                    } else {
                        unmapped = Some(format!("PROXY protocol to backends: {NOT_YET}"));
                    }
                }
                "proto" | "alpn" => {
                    h2 = arg.split(',').next() == Some("h2");
                    if !h2 {
                        unmapped = Some("only h2 has a floatlb counterpart (pool protocol)".into());
                    } else if ctx.keys.pool_protocol {
                        // Written per pool below.
                    } else {
                        unmapped = Some(format!("HTTP/2 to backends: {NOT_YET}"));
                    }
                }
                "backup" => unmapped = Some("floatlb has no backup servers: every backend of a pool takes requests (put it in a pool of its own, or give it weight 0 and set it ready with floatlb ctl when needed)".into()),
                "disabled" => {
                    b.set("weight", "0".into());
                    unmapped = Some("imported with weight 0 (drained); floatlb has no disabled state in the file".into());
                }
                "minconn" => unmapped = Some("floatlb has no dynamic maxconn".into()),
                "port" | "addr" => unmapped = Some("floatlb checks a backend at its own address and port".into()),
                "resolvers" if ctx.keys.backend_names => {
                    // floatlb asks again on every name's TTL, always.
                }
                "resolve-prefer" if ctx.keys.backend_names && (arg == "ipv4" || arg == "ipv6") => {
                    match &ctx.resolver_family {
                        Some(f) if *f != arg => {
                            unmapped = Some(format!("floatlb's [resolver] family is one for the file: {f} of an earlier server is kept"))
                        }
                        _ => ctx.resolver_family = Some(arg.clone()),
                    }
                }
                "init-addr" if ctx.keys.backend_names => {
                    unmapped = Some("floatlb resolves names over DNS at start and keeps asking; no other start-up address".into())
                }
                "resolvers" | "resolve-prefer" | "init-addr" | "resolve-net" => unmapped = Some("floatlb resolves no names: backends are ip:port".into()),
                "on-marked-down" | "on-marked-up" | "on-error" | "observe" | "error-limit" => {
                    unmapped = Some("floatlb's passive check is health passive-fall (failed connects)".into())
                }
                "fastinter" | "downinter" => unmapped = Some("floatlb checks at one interval".into()),
                "check-ssl" | "check-sni" | "check-proto" | "check-alpn" | "check-send-proxy" => unmapped = Some("floatlb's check speaks cleartext HTTP/1.1".into()),
                _ => unmapped = Some("server option not supported".into()),
            }
            if let Some(r) = unmapped {
                let a = if SERVER_ARGS.contains(&o) {
                    format!(" {arg}")
                } else {
                    String::new()
                };
                ctx.skip_part(l, &format!("server {sname} {o}{a}"), &r, &mut part_notes);
                ok = false;
            }
            if SERVER_ARGS.contains(&o) {
                i += 1;
            }
            i += 1;
        }
        if !ctx.keys.pool_protocol {
            h2 = false;
        }
        if ssl && ctx.keys.pool_tls {
            // Kept for the pool-level decision below.
        } else if ssl {
            ctx.skip_part(
                l,
                &format!("server {sname} ssl"),
                &format!("TLS to backends: {NOT_YET}"),
                &mut part_notes,
            );
            ok = false;
        }
        if check {
            checked += 1;
        }
        match parse_addr(l.w(2), None) {
            Ok(a) => {
                b.set("address", quote(&a.to_string()));
                b.comments = part_notes;
                backends.push((b, check, l.clone()));
                let ssl = ssl && ctx.keys.pool_tls;
                let tls = if ssl { tls_opts } else { Vec::new() };
                transports.push((l.clone(), (ssl, tls, send_proxy, h2)));
            }
            Err(_) if ctx.keys.backend_names && host_port(l.w(2)).is_some() => {
                let hp = host_port(l.w(2)).unwrap_or_default();
                b.set("address", quote(&hp));
                part_notes.push(format!(
                    "{hp}: floatlb asks DNS for it (the [resolver] servers, no /etc/hosts) and again on its TTL; one backend per address"
                ));
                b.comments = part_notes;
                backends.push((b, check, l.clone()));
                let ssl = ssl && ctx.keys.pool_tls;
                let tls = if ssl { tls_opts } else { Vec::new() };
                transports.push((l.clone(), (ssl, tls, send_proxy, h2)));
            }
            Err(e) => {
                t.comments.append(&mut part_notes);
                ctx.skip_part(
                    l,
                    &format!("server {sname} {}", l.w(2)),
                    &e,
                    &mut t.comments,
                );
                ok = false;
            }
        }
        if ok {
            ctx.ok();
        }
    }
    if checked > 0 && checked < backends.len() {
        for (b, check, l) in backends.iter_mut() {
            if !*check {
                ctx.skip_part(
                    l,
                    &format!("server {} (no check)", l.w(1)),
                    "floatlb checks every backend of a pool: this one is checked too",
                    &mut b.comments,
                );
            }
        }
    }
    // Pool-level keys.
    if !s.balance.is_empty() || s.hash_consistent {
        let mut b = s.balance.clone();
        if b.is_empty() {
            b.push(("algorithm".into(), quote("round-robin")));
        }
        if s.hash_consistent {
            b.push(("consistent".into(), "true".into()));
        }
        t.set("balance", inline(&b));
    }
    let mut h: Vec<(String, String)> = Vec::new();
    if checked > 0 {
        let httpchk = s.health.iter().any(|(k, _)| k == "_httpchk");
        for (k, v) in &s.health {
            if !k.starts_with('_') {
                h.push((k.clone(), v.clone()));
            }
        }
        if s.mode_tcp {
            h.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "method" | "path" | "host" | "expect-status" | "expect-body"
                )
            });
        } else if !httpchk {
            t.note("HAProxy checked TCP connects (no option httpchk); floatlb checks by HTTP: any status passes".into());
            set_kv(&mut h, "expect-status", quote("100-599"));
        }
        // HAProxy's defaults differ from floatlb's: inter 2s, rise 2, fall 3.
        let mut d = BTreeMap::from([
            ("interval", quote("2s")),
            ("rise", "2".to_string()),
            ("fall", "3".to_string()),
        ]);
        for (k, v) in &health_opts {
            d.insert(k, v.clone());
        }
        for (k, v) in d {
            h.push((k.to_string(), v));
        }
        if let Some(ms) = s.timeouts.get("check").or(s.timeouts.get("connect")) {
            h.push(("timeout".into(), quote(&ms_to_duration(*ms))));
        }
    } else {
        h.push(("enabled".into(), "false".into()));
        h.push(("passive-fall".into(), "0".into()));
    }
    t.set("health", inline(&h));
    let mut tm = Vec::new();
    for (k, key) in [("connect", "connect"), ("server", "server")] {
        if let Some(ms) = s.timeouts.get(k) {
            tm.push((key.to_string(), quote(&ms_to_duration(*ms))));
        }
    }
    if !tm.is_empty() {
        t.set("timeouts", inline(&tm));
    }
    t.set("retries", s.retries.unwrap_or(3).to_string());
    t.set("redispatch", s.redispatch.to_string());
    if any_maxconn {
        let q = s
            .timeouts
            .get("queue")
            .or(s.timeouts.get("connect"))
            .copied()
            .unwrap_or(5000);
        t.set("queue-timeout", quote(&ms_to_duration(q.max(1))));
    }
    if let Some(c) = &s.cookie {
        t.set("cookie", c.clone());
    }
    if !s.errorfiles.is_empty() {
        t.set("error-pages", error_pages(&s.errorfiles));
        t.note("errorfile: HAProxy's files hold a whole answer (status line and head); floatlb sends the file as the body: keep only the body in them".into());
    }
    // TLS, PROXY protocol and HTTP/2 are a pool's in floatlb: written when every server
    // of the pool agrees, else reported on the servers that have them.
    let plain: Transport = (false, Vec::new(), None, false);
    match transports.first() {
        Some((_, first)) if transports.iter().all(|(_, x)| x == first) => {
            let (ssl, tls, send_proxy, h2) = first;
            match send_proxy {
                Some(_) if *h2 => {
                    for (l, _) in &transports {
                        ctx.skip_part(
                            l,
                            &format!("server {} send-proxy", l.w(1)),
                            "floatlb sends a PROXY header only to HTTP/1.1 backends (one HTTP/2 connection carries many clients)",
                            &mut t.comments,
                        );
                    }
                }
                Some(v) => t.set("send-proxy", v.clone()),
                None => {}
            }
            if *h2 {
                t.set("protocol", quote(if *ssl { "h2" } else { "h2c" }));
            }
            if *ssl {
                t.set("tls", inline(tls));
            }
        }
        _ => {
            for (l, x) in &transports {
                if *x != plain {
                    let at = backends
                        .iter_mut()
                        .find(|(_, _, bl)| bl.line == l.line && bl.file == l.file)
                        .map(|(b, _, _)| &mut b.comments);
                    let mut sink = Vec::new();
                    ctx.skip_part(
                        l,
                        &format!("server {} (ssl, send-proxy, proto h2)", l.w(1)),
                        "floatlb sets TLS, PROXY protocol and HTTP/2 per pool and this pool's servers differ: put them in pools of their own",
                        at.unwrap_or(&mut sink),
                    );
                }
            }
        }
    }
    let empty = backends.is_empty();
    for (b, _, _) in backends {
        t.children.push(b);
    }
    if empty {
        t.note(format!("pool {name}: no server floatlb can reach (ip:port), so it is left out, with the routes to it"));
        t.commented_out = true;
    }
    if s.mode_tcp && !ctx.keys.listen_mode_tcp {
        // Reported by the caller; kept out of the file.
        t.commented_out = true;
    }
    PoolOut {
        table: t,
        edits_req,
        edits_resp,
        empty: empty || s.mode_tcp && !ctx.keys.listen_mode_tcp,
        forwardfor: s.forwardfor,
        forwarded: s.forwarded,
        xfp: s.xfp,
    }
}

fn error_pages(files: &[(String, String)]) -> String {
    inline(
        &files
            .iter()
            .map(|(c, f)| (c.clone(), quote(f)))
            .collect::<Vec<_>>(),
    )
}

/// One route before it is written: where it goes and what it matches.
struct RouteOut {
    frontend: String,
    name: String,
    m: Match,
    action: (String, String),
    pool: Option<String>,
    notes: Vec<String>,
}

/// A frontend's (or listen section's) lines: its binds, routes and client-side settings.
struct FrontOut {
    name: String,
    binds: Vec<Bind>,
    routes: Vec<RouteOut>,
    edits_req: Edits,
    edits_resp: Edits,
    errorfiles: Vec<(String, String)>,
    redirect_https: Option<Line>,
    settings: Settings,
    notes: Vec<String>,
}

fn frontend(
    name: &str,
    s: &Settings,
    lines: &[Line],
    own_backend: Option<&str>,
    acls: &mut Acls,
    ctx: &mut Ctx<'_>,
) -> FrontOut {
    let mut f = FrontOut {
        name: name.to_string(),
        binds: Vec::new(),
        routes: Vec::new(),
        edits_req: Edits::default(),
        edits_resp: Edits::default(),
        errorfiles: Vec::new(),
        redirect_https: None,
        settings: s.clone(),
        notes: Vec::new(),
    };
    let mut early = Vec::new();
    let mut mid = Vec::new();
    let mut late = Vec::new();
    let mut default_backend = own_backend.map(String::from);
    let mut n = 0;
    let mut route =
        |m: Match, action: (String, String), pool: Option<String>, notes: Vec<String>| {
            n += 1;
            RouteOut {
                frontend: name.to_string(),
                name: format!("{name}-{n}"),
                m,
                action,
                pool,
                notes,
            }
        };
    let backend_lines = own_backend.is_some();
    for l in lines {
        let w0 = l.w(0);
        // In a listen section, the backend half takes these.
        if backend_lines && backend_line(l) {
            continue;
        }
        let mut notes = Vec::new();
        if w0 != "cookie" && common(&mut f.settings, l, ctx, &mut notes) {
            f.notes.append(&mut notes);
            continue;
        }
        match w0 {
            "bind" => {
                let mut b = bind(l, name, ctx, &mut notes);
                f.binds.append(&mut b);
            }
            "acl" => match acl_defined(acls, l) {
                Ok(()) => ctx.ok(),
                Err(e) => ctx.skip(l, &e, &mut notes),
            },
            "use_backend" => match condition(l.rest(2), acls) {
                Ok(ms) if !l.w(1).contains('%') => {
                    ctx.ok();
                    for m in ms {
                        if m.cleartext {
                            ctx.skip(
                                l,
                                "`!{ ssl_fc }` only works with redirect scheme https",
                                &mut notes,
                            );
                            continue;
                        }
                        late.push(route(
                            m,
                            ("pool".into(), quote(l.w(1))),
                            Some(l.w(1).to_string()),
                            Vec::new(),
                        ));
                    }
                }
                Ok(_) => ctx.skip(
                    l,
                    "a backend name from a sample fetch: floatlb routes name their pool",
                    &mut notes,
                ),
                Err(e) => ctx.skip(l, &e, &mut notes),
            },
            "default_backend" => {
                default_backend = Some(l.w(1).to_string());
                ctx.ok();
            }
            "monitor-uri" => {
                early.push(route(
                    Match {
                        path: vec![l.w(1).to_string()],
                        ..Match::default()
                    },
                    ("respond".into(), "{ status = 200 }".into()),
                    None,
                    Vec::new(),
                ));
                ctx.ok();
            }
            "http-request" if is_xfp_rule(&l.words) => {
                f.settings.xfp = true;
                ctx.ok();
            }
            "http-request" if l.w(1) == "return" => {
                respond_rule(l, acls, ctx, &mut notes, &mut |m, a| {
                    early.push(route(m, a, None, Vec::new()))
                });
            }
            "http-request" | "http-response" | "http-after-response"
                if matches!(l.w(1), "set-header" | "add-header" | "del-header") =>
            {
                let e = if w0 == "http-request" {
                    &mut f.edits_req
                } else {
                    &mut f.edits_resp
                };
                match header_rule(&l.words, e) {
                    Ok(()) => {
                        ctx.ok();
                        if w0 == "http-after-response" {
                            f.notes.push(format!(
                                "{}:{}: http-after-response imported as response-headers, which floatlb applies to backends' answers only",
                                ctx.files[l.file].name, l.line
                            ));
                        }
                    }
                    Err(r) => ctx.skip(l, &r, &mut notes),
                }
            }
            "http-request" if matches!(l.w(1), "redirect" | "deny") => {
                redirect_or_deny(
                    l,
                    l.rest(1),
                    acls,
                    ctx,
                    &mut notes,
                    &mut f.redirect_https,
                    &mut |m, a| early.push(route(m, a, None, Vec::new())),
                );
            }
            "redirect" => {
                redirect_or_deny(
                    l,
                    &l.words,
                    acls,
                    ctx,
                    &mut notes,
                    &mut f.redirect_https,
                    &mut |m, a| mid.push(route(m, a, None, Vec::new())),
                );
            }
            "errorfile" => {}
            _ => ctx.skip(l, &reason_for(&l.words), &mut notes),
        }
        f.notes.append(&mut notes);
    }
    f.errorfiles = f.settings.errorfiles.clone();
    if !f.errorfiles.is_empty() {
        f.notes.push("errorfile: HAProxy's files hold a whole answer (status line and head); floatlb sends the file as the body: keep only the body in them".into());
    }
    f.routes.append(&mut early);
    f.routes.append(&mut mid);
    f.routes.append(&mut late);
    if let Some(b) = default_backend {
        let r = route(
            Match::default(),
            ("pool".into(), quote(&b)),
            Some(b.clone()),
            Vec::new(),
        );
        f.routes.push(r);
    }
    f
}

/// A `mode tcp` frontend (or listen section): its binds become `mode = "tcp"` listeners
/// whose `pool` is the default backend and whose `sni` entries come from
/// `use_backend X if { req.ssl_sni ... }`.
fn tcp_frontend(
    name: &str,
    s: &Settings,
    lines: &[Line],
    own_backend: Option<&str>,
    ctx: &mut Ctx<'_>,
) -> FrontOut {
    let mut f = FrontOut {
        name: name.to_string(),
        binds: Vec::new(),
        routes: Vec::new(),
        edits_req: Edits::default(),
        edits_resp: Edits::default(),
        errorfiles: Vec::new(),
        redirect_https: None,
        settings: s.clone(),
        notes: Vec::new(),
    };
    let mut pool = own_backend.map(String::from);
    let mut sni: Vec<(String, String)> = Vec::new();
    let mut sni_acls: HashMap<String, Vec<String>> = HashMap::new();
    // `req.ssl_sni [-i] [-m end] names`: the names as floatlb's sni keys.
    let sni_names = |w: &[String]| -> Option<Vec<String>> {
        if !matches!(
            w.first().map(|x| x.as_str()),
            Some("req.ssl_sni" | "req_ssl_sni")
        ) {
            return None;
        }
        let mut end = false;
        let mut out = Vec::new();
        let mut i = 1;
        while i < w.len() {
            match w[i].as_str() {
                "-i" => {}
                "-m" if w.get(i + 1).map(|x| x.as_str()) == Some("end") => {
                    end = true;
                    i += 1;
                }
                "-m" if w.get(i + 1).map(|x| x.as_str()) == Some("str") => i += 1,
                v if v.starts_with('-') => return None,
                v if end && v.starts_with('.') => out.push(format!("*{v}")),
                _ if end => return None,
                v => out.push(v.to_lowercase()),
            }
            i += 1;
        }
        (!out.is_empty()).then_some(out)
    };
    for l in lines {
        if own_backend.is_some() && backend_line(l) {
            continue;
        }
        let mut notes = Vec::new();
        if common(&mut f.settings, l, ctx, &mut notes) {
            f.notes.append(&mut notes);
            continue;
        }
        match l.w(0) {
            "bind" => {
                if l.words.iter().any(|w| w == "ssl") {
                    ctx.skip_part(
                        l,
                        &format!("bind {} ssl", l.w(1)),
                        "floatlb does not terminate TLS on a TCP listener (it passes TLS through)",
                        &mut notes,
                    );
                }
                let mut b = bind(l, name, ctx, &mut notes);
                for x in b.iter_mut() {
                    x.tls = false;
                    x.crt.clear();
                }
                f.binds.append(&mut b);
            }
            "default_backend" => {
                pool = Some(l.w(1).to_string());
                ctx.ok();
            }
            "acl" => match sni_names(l.rest(2)) {
                Some(n) => {
                    sni_acls.entry(l.w(1).to_string()).or_default().extend(n);
                    ctx.ok();
                }
                None => ctx.skip(
                    l,
                    "in mode tcp, floatlb routes by the TLS server name only (req.ssl_sni)",
                    &mut notes,
                ),
            },
            "use_backend" => {
                let cond = l.rest(2);
                let names = match cond {
                    [kw, name] if kw == "if" => sni_acls.get(name).cloned(),
                    [kw, open, rest @ ..]
                        if kw == "if"
                            && open == "{"
                            && rest.last().map(|x| x.as_str()) == Some("}") =>
                    {
                        sni_names(&rest[..rest.len() - 1])
                    }
                    _ => None,
                };
                match names {
                    Some(n) => {
                        for name in n {
                            if !sni.iter().any(|(k, _)| *k == name) {
                                sni.push((name, l.w(1).to_string()));
                            }
                        }
                        ctx.ok();
                    }
                    None => ctx.skip(l, "in mode tcp, floatlb routes by the TLS server name only: `if { req.ssl_sni -i NAME }`", &mut notes),
                }
            }
            "tcp-request"
                if matches!(l.w(1), "inspect-delay")
                    || l.text().contains("req_ssl_hello_type")
                    || l.text().contains("req.ssl_hello_type") =>
            {
                // floatlb waits for the whole ClientHello itself (within client-header).
                ctx.ok();
            }
            "option" if l.w(1) == "tcplog" => {
                f.settings.httplog = true;
                ctx.ok();
            }
            _ => ctx.skip(l, &reason_for(&l.words), &mut notes),
        }
        f.notes.append(&mut notes);
    }
    for b in f.binds.iter_mut() {
        b.tcp = Some((pool.clone(), sni.clone()));
    }
    f
}

/// `http-request return [status N] [content-type T] [string S | file F] [if ...]`.
fn respond_rule(
    l: &Line,
    acls: &Acls,
    ctx: &mut Ctx<'_>,
    notes: &mut Vec<String>,
    push: &mut dyn FnMut(Match, (String, String)),
) {
    let w = l.rest(2);
    let cond_at = w
        .iter()
        .position(|x| x == "if" || x == "unless")
        .unwrap_or(w.len());
    let ms = match condition(&w[cond_at..], acls) {
        Ok(ms) if ms.iter().all(|m| !m.cleartext) => ms,
        Ok(_) => return ctx.skip(l, "`!{ ssl_fc }` only with redirect scheme https", notes),
        Err(e) => return ctx.skip(l, &e, notes),
    };
    let mut e: Vec<(String, String)> = Vec::new();
    let args = &w[..cond_at];
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "status" => match v.parse::<u16>() {
                Ok(s) if (200..=599).contains(&s) => e.push(("status".into(), s.to_string())),
                _ => return ctx.skip(l, "floatlb answers itself with a status 200..=599", notes),
            },
            "content-type" => e.push(("content-type".into(), quote(&v))),
            "string" => e.push(("body".into(), quote(&v))),
            "file" => e.push(("file".into(), quote(&v))),
            o => {
                let why = format!("`{o}` not supported (floatlb's respond has status, content-type and a fixed body or file)");
                return ctx.skip(l, &why, notes);
            }
        }
        i += 2;
    }
    if !e.iter().any(|(k, _)| k == "status") {
        e.insert(0, ("status".into(), "200".into()));
    }
    ctx.ok();
    for m in ms {
        push(m, ("respond".into(), inline(&e)));
    }
}

/// `redirect ...` (also as `http-request redirect ...`) or `http-request deny ...`.
#[allow(clippy::too_many_arguments)]
fn redirect_or_deny(
    l: &Line,
    w: &[String],
    acls: &Acls,
    ctx: &mut Ctx<'_>,
    notes: &mut Vec<String>,
    redirect_https: &mut Option<Line>,
    push: &mut dyn FnMut(Match, (String, String)),
) {
    let cond_at = w
        .iter()
        .position(|x| x == "if" || x == "unless")
        .unwrap_or(w.len());
    // `unless { ssl_fc }` is `if !{ ssl_fc }`, the one negation floatlb has (redirect-http).
    let cond: Vec<String> = match &w[cond_at..] {
        [u, o, f, c] if u == "unless" && o == "{" && f == "ssl_fc" && c == "}" => {
            ["if", "!{", "ssl_fc", "}"].map(String::from).to_vec()
        }
        c => c.to_vec(),
    };
    let ms = match condition(&cond, acls) {
        Ok(ms) => ms,
        Err(e) => return ctx.skip(l, &e, notes),
    };
    let args = &w[1..cond_at];
    let action = if w[0] == "deny" {
        let mut status = 403u16;
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "deny_status" => match args.get(i + 1).and_then(|s| s.parse().ok()) {
                    Some(s) if (400..=599).contains(&s) => status = s,
                    _ => return ctx.skip(l, "deny_status outside 400..=599", notes),
                },
                o => return ctx.skip(l, &format!("deny option `{o}` not supported"), notes),
            }
            i += 2;
        }
        ("deny".to_string(), status.to_string())
    } else {
        let (kind, target) = match (args.first().map(|s| s.as_str()), args.get(1)) {
            (Some(k), Some(t)) => (k, t.as_str()),
            _ => return ctx.skip(l, "a redirect without its target", notes),
        };
        let mut code = 302u16;
        let mut i = 2;
        while i < args.len() {
            match args[i].as_str() {
                "code" => match args.get(i + 1).and_then(|s| s.parse().ok()) {
                    Some(c) if [301, 302, 303, 307, 308].contains(&c) => code = c,
                    _ => {
                        return ctx.skip(
                            l,
                            "floatlb redirects with 301, 302, 303, 307 or 308",
                            notes,
                        )
                    }
                },
                "drop-query" | "append-slash" | "set-cookie" | "clear-cookie" => {
                    return ctx.skip(
                        l,
                        &format!("redirect option `{}` not supported", args[i]),
                        notes,
                    )
                }
                o => return ctx.skip(l, &format!("redirect option `{o}` not supported"), notes),
            }
            i += 2;
        }
        if target.contains('%') {
            return ctx.skip(l, "a log-format target: floatlb's placeholders are {scheme} {host} {path} {query} {uri}", notes);
        }
        let location = match kind {
            "location" => target.to_string(),
            "prefix" => format!("{}{{uri}}", target.trim_end_matches('/')),
            "scheme" => {
                if target == "https"
                    && ms.len() == 1
                    && ms[0].cleartext
                    && ms[0]
                        == (Match {
                            cleartext: true,
                            ..Match::default()
                        })
                {
                    *redirect_https = Some(l.clone());
                    return ctx.ok();
                }
                format!("{target}://{{host}}{{uri}}")
            }
            k => return ctx.skip(l, &format!("redirect {k} not supported"), notes),
        };
        (
            "redirect".to_string(),
            inline(&[
                ("location".into(), quote(&location)),
                ("status".into(), code.to_string()),
            ]),
        )
    };
    if ms.iter().any(|m| m.cleartext) {
        return ctx.skip(
            l,
            "`!{ ssl_fc }` is imported with `redirect scheme https` only",
            notes,
        );
    }
    ctx.ok();
    for m in ms {
        push(m, action.clone());
    }
}

/// Maps the files into `doc`; returns the problems and the count of mapped directives.
pub(crate) fn import(files: &[Source], keys: Keys, doc: &mut Doc) -> (Vec<Problem>, usize) {
    let mut ctx = Ctx {
        files,
        keys,
        problems: Vec::new(),
        mapped: 0,
        resolver_family: None,
    };
    let mut top = Vec::new();
    let secs = sections(&mut ctx, &mut top);
    // defaults sections, in order, named ones remembered.
    let mut named: HashMap<String, Settings> = HashMap::new();
    let mut current = Settings::default();
    let mut global_notes = Vec::new();
    let mut global_maxconn = None;
    let mut workers = None;
    // Which defaults each proxy section gets.
    let mut inherited: Vec<Option<Settings>> = Vec::new();
    // The first `resolvers` section, as `[resolver]`.
    let mut resolver: Option<Table> = None;
    for s in &secs {
        match s.kind() {
            "defaults" => {
                let mut st = match s.from() {
                    Some(f) => named.get(f).cloned().unwrap_or_default(),
                    None => Settings::default(),
                };
                for l in &s.body {
                    if !common(&mut st, l, &mut ctx, &mut global_notes) {
                        match l.w(0) {
                            "option" if l.w(1) == "forwardfor" => {}
                            _ => ctx.skip(l, &reason_for(&l.words), &mut global_notes),
                        }
                    }
                }
                ctx.ok();
                if !s.name().is_empty() && s.name() != "from" {
                    named.insert(s.name().to_string(), st.clone());
                }
                current = st;
                inherited.push(None);
            }
            "global" => {
                ctx.ok();
                for l in &s.body {
                    match (l.w(0), l.w(1).parse::<u64>()) {
                        ("maxconn", Ok(n)) => {
                            global_maxconn = Some(n);
                            ctx.ok();
                        }
                        ("nbthread", Ok(n)) => {
                            workers = Some(n);
                            ctx.ok();
                        }
                        _ => ctx.skip(l, &reason_for(&l.words), &mut global_notes),
                    }
                }
                inherited.push(None);
            }
            "frontend" | "backend" | "listen" => {
                ctx.ok();
                let st = match s.from() {
                    Some(f) => named.get(f).cloned().unwrap_or_default(),
                    None => current.clone(),
                };
                inherited.push(Some(st));
            }
            "resolvers" if ctx.keys.backend_names && resolver.is_none() => {
                let mut t = Table::new(Kind::Resolver, "[resolver]");
                let mut servers = Vec::new();
                ctx.ok();
                for l in &s.body {
                    match (l.w(0), l.w(1)) {
                        ("nameserver", _) => match parse_addr(l.w(2), Some(53)) {
                            Ok(a) => {
                                servers.push(a.to_string());
                                ctx.ok();
                            }
                            Err(e) => ctx.skip(l, &e, &mut t.comments),
                        },
                        ("parse-resolv-conf", _) => {
                            // floatlb reads /etc/resolv.conf when it has no nameservers.
                            ctx.ok();
                        }
                        ("timeout", "retry") | ("hold", "obsolete") => {
                            match parse_time(l.w(2)).filter(|ms| *ms > 0) {
                                Some(ms) => {
                                    let key = if l.w(0) == "timeout" { "timeout" } else { "hold" };
                                    t.set(key, quote(&ms_to_duration(ms)));
                                    ctx.ok();
                                }
                                None => ctx.skip(l, "not a time", &mut t.comments),
                            }
                        }
                        _ => ctx.skip(
                            l,
                            "floatlb's [resolver] has nameservers, ttl-min, ttl-max, timeout, hold and family",
                            &mut t.comments,
                        ),
                    }
                }
                if !servers.is_empty() {
                    t.entries.insert(0, ("nameservers".into(), list(&servers)));
                }
                resolver = Some(t);
                inherited.push(None);
            }
            k => {
                let why = format!("a `{k}` section: not imported (floatlb has no counterpart; see docs/migrating.md)");
                ctx.skip(&s.head, &why, &mut global_notes);
                for l in &s.body {
                    ctx.skip(l, &format!("inside the `{k}` section"), &mut global_notes);
                }
                inherited.push(None);
            }
        }
    }
    // Backends (and listen sections' backend half) first: routes name them.
    let mut pools: Vec<(String, PoolOut)> = Vec::new();
    let mut fronts: Vec<FrontOut> = Vec::new();
    let mut tcp_proxies = Vec::new();
    let mut tcp_fronts: Vec<FrontOut> = Vec::new();
    for (s, inh) in secs.iter().zip(&inherited) {
        let Some(st) = inh else { continue };
        let mut acls = Acls::new();
        let mut st = st.clone();
        // A section's own `mode` decides before anything else is read.
        if let Some(m) = s.body.iter().find(|l| l.w(0) == "mode") {
            st.mode_tcp = m.w(1) == "tcp";
        }
        if st.mode_tcp && ctx.keys.listen_mode_tcp {
            if matches!(s.kind(), "backend" | "listen") {
                let p = pool(
                    s.name(),
                    &st,
                    &s.body,
                    s.kind() == "listen",
                    &mut acls,
                    &mut ctx,
                );
                pools.push((s.name().to_string(), p));
            }
            if matches!(s.kind(), "frontend" | "listen") {
                let own = (s.kind() == "listen").then(|| s.name());
                tcp_fronts.push(tcp_frontend(s.name(), &st, &s.body, own, &mut ctx));
            }
            continue;
        }
        if st.mode_tcp {
            let mut notes = Vec::new();
            let why = "mode tcp: floatlb proxies HTTP only (not supported yet)";
            ctx.skip(&s.head, why, &mut notes);
            for l in &s.body {
                ctx.skip(l, "in a mode tcp section", &mut notes);
            }
            tcp_proxies.push(s.name().to_string());
            global_notes.append(&mut notes);
            continue;
        }
        if matches!(s.kind(), "backend" | "listen") {
            let p = pool(
                s.name(),
                &st,
                &s.body,
                s.kind() == "listen",
                &mut acls,
                &mut ctx,
            );
            pools.push((s.name().to_string(), p));
        }
        if matches!(s.kind(), "frontend" | "listen") {
            let own = (s.kind() == "listen").then(|| s.name());
            fronts.push(frontend(s.name(), &st, &s.body, own, &mut acls, &mut ctx));
        }
    }
    if let Some(f) = ctx.resolver_family.clone() {
        resolver
            .get_or_insert_with(|| Table::new(Kind::Resolver, "[resolver]"))
            .set("family", quote(&f));
    }
    if let Some(t) = resolver.take() {
        doc.push(t);
    }
    // Listeners: cleartext first; the first TLS bind is [tls] address.
    let mut first_tls: Option<Bind> = None;
    let mut listen_names: HashMap<String, Vec<String>> = HashMap::new();
    let mut listeners: Vec<Table> = Vec::new();
    let mut certs: Vec<String> = Vec::new();
    let mut alpn: Option<Vec<String>> = None;
    let mut count: HashMap<String, usize> = HashMap::new();
    for f in fronts.iter().chain(&tcp_fronts) {
        for b in &f.binds {
            for c in &b.crt {
                if !certs.contains(c) {
                    certs.push(c.clone());
                }
            }
            if b.alpn.is_some() && alpn.is_none() {
                alpn = b.alpn.clone();
            }
            if b.tls && first_tls.is_none() {
                first_tls = Some(b.clone());
                listen_names
                    .entry(f.name.clone())
                    .or_default()
                    .push("tls".into());
                continue;
            }
            let n = count.entry(b.frontend.clone()).or_insert(0);
            *n += 1;
            let lname = if *n == 1 {
                b.frontend.clone()
            } else {
                format!("{}-{}", b.frontend, n)
            };
            listen_names
                .entry(f.name.clone())
                .or_default()
                .push(lname.clone());
            let mut t = Table::new(Kind::Listen, "[[listen]]");
            t.comments = b.notes.clone();
            t.set("name", quote(&lname));
            t.set("address", quote(&b.address.to_string()));
            if b.tls {
                t.set("tls", "true".into());
            }
            if b.accept_proxy {
                t.note("accept-proxy: HAProxy takes the header from any client; narrow the list to the addresses of what sends it".into());
                t.set("accept-proxy", list(&["0.0.0.0/0", "::/0"]));
            }
            if let Some((pool, sni)) = &b.tcp {
                t.set("mode", quote("tcp"));
                if let Some(p) = pool {
                    t.set("pool", quote(p));
                }
                if !sni.is_empty() {
                    let e: Vec<(String, String)> =
                        sni.iter().map(|(k, v)| (k.clone(), quote(v))).collect();
                    t.set("sni", inline(&e));
                }
            }
            listeners.push(t);
        }
    }
    if let Some(tb) = &first_tls {
        if !listeners.iter().any(|t| t.get("tls").is_none()) {
            let mut t = Table::new(Kind::Listen, "[[listen]]");
            t.note("added: floatlb needs a cleartext listener beside [tls]; HAProxy had TLS binds only (port 80 of the same address)".into());
            t.set("name", quote("http"));
            t.set(
                "address",
                quote(&SocketAddr::new(tb.address.ip(), 80).to_string()),
            );
            listeners.insert(0, t);
        }
        // The first cleartext listener goes first (workers and maxconn are written there).
        if let Some(i) = listeners.iter().position(|t| t.get("tls").is_none()) {
            let t = listeners.remove(i);
            listeners.insert(0, t);
        }
    }
    if let Some(first) = listeners.first_mut() {
        let maxconn = global_maxconn.or_else(|| fronts.iter().find_map(|f| f.settings.maxconn));
        if let Some(m) = maxconn {
            first.set("maxconn", m.to_string());
        }
        if let Some(w) = workers {
            first.set("workers", w.to_string());
        }
        first.comments.splice(0..0, global_notes.drain(..));
    }
    for t in listeners {
        doc.push(t);
    }
    if let Some(tb) = &first_tls {
        let mut t = Table::new(Kind::Tls, "[tls]");
        t.comments = tb.notes.clone();
        t.set("address", quote(&tb.address.to_string()));
        if let Some(a) = &alpn {
            t.set("alpn", list(a));
        }
        if fronts.iter().any(|f| f.redirect_https.is_some()) {
            t.set("redirect-http", "true".into());
        }
        for c in &certs {
            let mut ct = Table::new(Kind::Tls, "[[tls.certificate]]");
            ct.note("HAProxy's crt file holds the certificate chain and the key".into());
            ct.set("cert", quote(c));
            ct.set("key", quote(c));
            t.children.push(ct);
        }
        doc.push(t);
    } else if let Some(l) = fronts.iter().find_map(|f| f.redirect_https.clone()) {
        ctx.skip(
            &l,
            "redirect to https needs a TLS listener ([tls]); the file has no ssl bind",
            &mut doc.notes,
        );
    }
    // Client-side timeouts: one set for every listener, from the first frontend.
    let mut timeouts = Table::new(Kind::Timeouts, "[timeouts]");
    let front_settings = fronts
        .first()
        .map(|f| f.settings.clone())
        .unwrap_or_else(|| current.clone());
    for (h, key) in [
        ("client", "client"),
        ("http-request", "client-header"),
        ("http-keep-alive", "idle"),
        ("tunnel", "tunnel"),
        ("connect", "connect"),
        ("server", "server"),
    ] {
        if let Some(ms) = front_settings.timeouts.get(h).or(current.timeouts.get(h)) {
            timeouts.set(key, quote(&ms_to_duration((*ms).max(1))));
        }
    }
    for f in fronts.iter().skip(1) {
        for h in ["client", "http-request", "http-keep-alive", "tunnel"] {
            if f.settings.timeouts.get(h) != front_settings.timeouts.get(h) {
                timeouts.note(format!(
                    "frontend {}: timeout {h} differs; floatlb has one for all listeners: {}'s is kept",
                    f.name,
                    fronts[0].name
                ));
            }
        }
    }
    if !timeouts.entries.is_empty() {
        doc.push(timeouts);
    }
    let mut proxy = Table::new(Kind::Proxy, "[proxy]");
    let any = |f: &dyn Fn(&Settings) -> bool| fronts.iter().any(|x| f(&x.settings)) || f(&current);
    // A backend's `option forwardfor` adds the field to what goes to it; floatlb's key
    // holds for every pool.
    let pool_ff = pools.iter().any(|(_, p)| p.forwardfor && !p.empty);
    let pool_fwd = pools.iter().any(|(_, p)| p.forwarded && !p.empty);
    proxy.note(
        "HAProxy adds X-Forwarded-For only with option forwardfor, X-Forwarded-Proto only by http-request set-header"
            .into(),
    );
    proxy.set(
        "x-forwarded-for",
        (any(&|s| s.forwardfor) || pool_ff).to_string(),
    );
    let pool_xfp = pools.iter().any(|(_, p)| p.xfp && !p.empty);
    proxy.set(
        "x-forwarded-proto",
        (any(&|s| s.xfp) || pool_xfp).to_string(),
    );
    if any(&|s| s.forwarded) || pool_fwd {
        proxy.set("forwarded", "true".into());
    }
    if !fronts.is_empty() {
        doc.push(proxy);
    }
    if any(&|s| s.httplog) && !fronts.is_empty() {
        let mut t = Table::new(Kind::Log, "[log]");
        t.note("option httplog: floatlb's combined access log on standard output".into());
        t.set("access", quote("combined"));
        doc.push(t);
    }
    // Pools that nothing can reach are left out with their routes.
    let dead: Vec<String> = pools
        .iter()
        .filter(|(_, p)| p.empty)
        .map(|(n, _)| n.clone())
        .collect();
    let several = fronts.len() > 1;
    let mut route_tables = Vec::new();
    for f in &fronts {
        let names = listen_names.get(&f.name).cloned().unwrap_or_default();
        if f.binds.is_empty() && !f.routes.is_empty() {
            let mut notes = Vec::new();
            notes.push(format!(
                "frontend {}: no listener could be made, so its routes are left out",
                f.name
            ));
            doc.notes.append(&mut notes);
            continue;
        }
        let mut catch_all: Option<&str> = None;
        for r in &f.routes {
            let mut t = Table::new(Kind::Route, "[[route]]");
            t.comments = r.notes.clone();
            t.set("name", quote(&r.name));
            if let Some(first) = catch_all {
                // HAProxy never reaches it either; floatlb check would refuse it.
                t.note(format!(
                    "never reached: route {first} before it takes every request of this frontend"
                ));
                t.commented_out = true;
            } else if r.m == Match::default() {
                catch_all = Some(&r.name);
            }
            r.m.write(&mut t);
            if several {
                t.set("listener", list(&names));
            }
            t.set(&r.action.0, r.action.1.clone());
            if let Some(p) = &r.pool {
                let Some((_, po)) = pools.iter().find(|(n, _)| n == p) else {
                    if tcp_proxies.contains(p) {
                        t.note(format!("backend {p} is mode tcp: this route is left out"));
                    } else {
                        t.note(format!(
                            "no backend named {p} in the files: this route is left out"
                        ));
                    }
                    t.commented_out = true;
                    route_tables.push(t);
                    continue;
                };
                if dead.contains(p) {
                    t.note(format!("pool {p} is left out: so is this route"));
                    t.commented_out = true;
                }
                let req = f.edits_req.merge(&po.edits_req);
                let resp = f.edits_resp.merge(&po.edits_resp);
                if !req.is_empty() {
                    t.set("request-headers", req.render());
                }
                if !resp.is_empty() {
                    t.set("response-headers", resp.render());
                }
            }
            if !f.errorfiles.is_empty() && r.frontend == f.name {
                t.set("error-pages", error_pages(&f.errorfiles));
            }
            route_tables.push(t);
        }
    }
    for f in &tcp_fronts {
        doc.notes.extend(f.notes.iter().cloned());
    }
    // Notes of frontends go above their first route, or the top of the file.
    for f in &fronts {
        let first = format!("{}-1", f.name);
        match route_tables
            .iter_mut()
            .find(|t| t.get("name") == Some(&quote(&first)))
        {
            Some(t) => t
                .comments
                .splice(0..0, f.notes.iter().cloned())
                .for_each(drop),
            None => doc.notes.extend(f.notes.iter().cloned()),
        }
    }
    for (_, p) in pools {
        doc.push(p.table);
    }
    for t in route_tables {
        doc.push(t);
    }
    doc.notes.append(&mut top);
    doc.notes.append(&mut global_notes);
    let mut problems = ctx.problems;
    problems.sort_by_key(|(f, l, _)| (*f, *l));
    (
        problems.into_iter().map(|(_, _, p)| p).collect(),
        ctx.mapped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        tokenize(s).unwrap()
    }

    fn run(cfg: &str) -> (String, Vec<Problem>) {
        let mut d = Doc::default();
        let src = [Source {
            name: "h.cfg".into(),
            text: cfg.into(),
        }];
        let (p, _) = import(&src, Keys::NONE, &mut d);
        (d.render(""), p)
    }

    /// Lines of HAProxy words and stray characters in any order: never a panic, and every
    /// output is text.
    #[test]
    fn any_input_imports_without_panicking() {
        let words = [
            "global",
            "defaults",
            "frontend f",
            "backend b",
            "listen l",
            "bind",
            ":80",
            "ssl",
            "crt",
            "mode",
            "tcp",
            "http",
            "acl",
            "a",
            "path_beg",
            "hdr(host)",
            "-i",
            "-m",
            "{",
            "}",
            "!",
            "||",
            "if",
            "unless",
            "use_backend",
            "default_backend",
            "server",
            "s",
            "198.18.0.1:80",
            "check",
            "weight",
            "999",
            "maxconn",
            "inter",
            "99999999999999999d",
            "balance",
            "hdr(",
            "random(0)",
            "http-request",
            "set-header",
            "deny",
            "redirect",
            "location",
            "code",
            "timeout",
            "client",
            "cookie",
            "errorfile",
            "option",
            "httpchk",
            "http-check",
            "expect",
            "send",
            ".if",
            ".endif",
            "\"",
            "'",
            "\\",
            "#",
            "req.ssl_sni",
            "sni",
            "str(",
            "hash",
            "req.cook(",
            "tcp-request",
        ];
        let mut rand = crate::test_util::xorshift(7);
        for round in 0..300 {
            let mut text = String::new();
            for _ in 0..rand(30) {
                for _ in 0..rand(8) {
                    text.push_str(words[rand(words.len() as u64) as usize]);
                    text.push(' ');
                }
                text.push('\n');
            }
            for keys in [
                Keys::NONE,
                Keys::CURRENT,
                Keys {
                    listen_mode_tcp: true,
                    pool_tls: true,
                    pool_protocol: true,
                    pool_send_proxy: true,
                    listen_accept_proxy: true,
                    ..Keys::NONE
                },
            ] {
                let mut d = Doc::default();
                let src = [Source {
                    name: format!("r{round}"),
                    text: text.clone(),
                }];
                let _ = import(&src, keys, &mut d);
                let _ = d.render("");
            }
        }
    }

    /// Nothing is dropped without a word: an unknown directive put after any line of the
    /// test configuration, in any section, is reported at its own line.
    #[test]
    fn an_unknown_directive_anywhere_is_reported_at_its_line() {
        let base = include_str!("../../tests/data/import/haproxy.cfg");
        let lines: Vec<&str> = base.lines().collect();
        for at in 0..lines.len() {
            let mut text: Vec<&str> = lines.clone();
            text.insert(at + 1, "    zzz-unknown-directive 1");
            let src = [Source {
                name: "h.cfg".into(),
                text: text.join("\n"),
            }];
            let (p, _) = import(&src, Keys::CURRENT, &mut Doc::default());
            assert!(
                p.iter()
                    .any(|p| p.line == at + 2 && p.directive.starts_with("zzz-unknown-directive")),
                "after line {}: {p:?}",
                at + 1
            );
        }
    }

    #[test]
    fn tokens_follow_haproxy_quoting() {
        assert_eq!(words("  bind :80   # comment"), ["bind", ":80"]);
        assert_eq!(
            words(r#"http-request set-header X-A "a b\"c""#),
            ["http-request", "set-header", "X-A", "a b\"c"]
        );
        assert_eq!(
            words(r"acl a path_reg ^/a\ b 'x#y'"),
            ["acl", "a", "path_reg", "^/a b", "x#y"]
        );
        assert!(tokenize("x \"open").is_err());
    }

    #[test]
    fn times_default_to_milliseconds() {
        assert_eq!(parse_time("500"), Some(500));
        assert_eq!(parse_time("5s"), Some(5000));
        assert_eq!(parse_time("1m"), Some(60_000));
        assert_eq!(parse_time("2d"), Some(172_800_000));
        assert_eq!(parse_time("5x"), None);
        assert_eq!(parse_time("99999999999999999d"), None);
    }

    #[test]
    fn addresses_take_haproxy_forms() {
        assert_eq!(parse_addr(":80", None).unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(
            parse_addr("*:8080", None).unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_addr(":::80", None).unwrap().to_string(), "[::]:80");
        assert_eq!(
            parse_addr("ipv6@2001:2::1:443", None).unwrap().to_string(),
            "[2001:2::1]:443"
        );
        assert!(parse_addr("app.example:80", None)
            .unwrap_err()
            .contains("name"));
        assert!(parse_addr("198.18.0.1", None)
            .unwrap_err()
            .contains("no port"));
        assert!(parse_addr("unix@/run/x.sock", None).is_err());
    }

    #[test]
    fn acls_become_matchers() {
        let t = |s: &str| acl_term(&words(s));
        assert_eq!(
            t("hdr(host) -i Shop.Example").unwrap(),
            Term::Host(vec!["shop.example".into()])
        );
        assert_eq!(
            t("hdr_end(host) -i .example").unwrap(),
            Term::Host(vec!["*.example".into()])
        );
        assert_eq!(
            t("req.hdr(host),field(1,:) -i a.example").unwrap(),
            Term::Host(vec!["a.example".into()])
        );
        assert_eq!(
            t("path_beg /img /css").unwrap(),
            Term::PathPrefix(vec!["/img".into(), "/css".into()])
        );
        assert_eq!(
            t("path_end .css .js").unwrap(),
            Term::PathRegex("(?:\\.css|\\.js)$".into())
        );
        assert_eq!(
            t("method POST PUT").unwrap(),
            Term::Method(vec!["POST".into(), "PUT".into()])
        );
        assert_eq!(
            t("src 198.18.0.0/24").unwrap(),
            Term::Source(vec!["198.18.0.0/24".into()])
        );
        assert_eq!(
            t("req.fhdr(x-env) -m str beta").unwrap(),
            Term::Header("{ name = \"x-env\", equals = \"beta\" }".into())
        );
        assert_eq!(
            t("hdr(x-debug) -m found").unwrap(),
            Term::Header("{ name = \"x-debug\" }".into())
        );
        assert_eq!(
            t("url_param(v) 2").unwrap(),
            Term::Query("{ name = \"v\", equals = \"2\" }".into())
        );
        assert!(t("ssl_fc_sni -i a").is_err());
        assert!(t("src -f /etc/list").is_err());
    }

    #[test]
    fn conditions_expand_to_routes() {
        let mut acls = Acls::new();
        for l in [
            "acl shop hdr(host) shop.example",
            "acl shop hdr(host) store.example",
            "acl post method POST",
            "acl img path_beg /img",
        ] {
            let line = Line {
                file: 0,
                line: 1,
                words: words(l),
            };
            acl_defined(&mut acls, &line).unwrap();
        }
        let ms = condition(&words("if shop post"), &acls).unwrap();
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].host, ["shop.example", "store.example"]);
        assert_eq!(ms[0].method, ["POST"]);
        let ms = condition(&words("if shop || img"), &acls).unwrap();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[1].path_prefix, ["/img"]);
        let ms = condition(
            &words("if { path_beg /api } { hdr(host) api.example }"),
            &acls,
        )
        .unwrap();
        assert_eq!(
            (ms[0].path_prefix.clone(), ms[0].host.clone()),
            (vec!["/api".into()], vec!["api.example".into()])
        );
        assert!(condition(&words("if !post"), &acls)
            .unwrap_err()
            .contains("negat"));
        assert!(condition(&words("unless post"), &acls).is_err());
        assert!(condition(&words("if img { path_reg x }"), &acls)
            .unwrap_err()
            .contains("one matcher"));
        assert!(condition(&words("if nosuch"), &acls).is_err());
    }

    #[test]
    fn a_frontend_and_backends_become_listeners_pools_and_routes() {
        let (toml, problems) = run(
            "global\n maxconn 4000\n daemon\ndefaults\n mode http\n timeout connect 5s\n timeout client 30s\n timeout server 30s\n option forwardfor\n\
             frontend www\n bind :80\n acl api path_beg /api/\n use_backend api if api\n default_backend web\n\
             backend web\n balance leastconn\n option httpchk GET /health\n server w1 198.18.0.11:80 check weight 10 maxconn 100\n server w2 198.18.0.12:80 check backup\n\
             backend api\n server a1 198.18.0.21:8080\n",
        );
        assert!(
            toml.contains("[[listen]]\nname = \"www\"\naddress = \"0.0.0.0:80\"\nmaxconn = 4000"),
            "{toml}"
        );
        assert!(
            toml.contains("path-prefix = [\"/api/\"]\npool = \"api\""),
            "{toml}"
        );
        assert!(toml.contains("name = \"www-2\"\npool = \"web\""), "{toml}");
        assert!(
            toml.contains("balance = { algorithm = \"least-conn\" }"),
            "{toml}"
        );
        assert!(toml.contains("health = { method = \"GET\", path = \"/health\", fall = 3, interval = \"2s\", rise = 2, timeout = \"5s\" }"), "{toml}");
        assert!(toml.contains("queue-timeout = \"5s\""), "{toml}");
        assert!(
            toml.contains("health = { enabled = false, passive-fall = 0 }"),
            "{toml}"
        );
        let got: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{}", p.line, p.directive))
            .collect();
        assert_eq!(got, ["3:daemon", "19:server w2 backup"], "{toml}");
        assert!(
            toml.contains(
                "# not imported: h.cfg:19: server w2 backup: floatlb has no backup servers"
            ),
            "{toml}"
        );
    }

    #[test]
    fn tls_binds_make_the_tls_table_and_https_redirect() {
        let (toml, problems) = run(
            "frontend f\n mode http\n bind :80\n bind :443 ssl crt /etc/site.pem alpn h2,http/1.1\n http-request redirect scheme https code 301 if !{ ssl_fc }\n default_backend b\nbackend b\n mode http\n server s 198.18.0.1:80\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(toml.contains("[tls]\naddress = \"0.0.0.0:443\"\nalpn = [\"h2\", \"http/1.1\"]\nredirect-http = true"), "{toml}");
        assert!(
            toml.contains("cert = \"/etc/site.pem\"\nkey = \"/etc/site.pem\""),
            "{toml}"
        );
    }

    #[test]
    fn header_rules_and_unknowns_are_reported_or_mapped() {
        let (toml, problems) = run(
            "frontend f\n mode http\n bind :80\n http-request set-header X-Site shop\n http-request add-header X-Id %[uuid]\n http-response del-header Server\n http-request deny deny_status 429 if { src 198.18.9.0/24 }\n option dontlognull\n default_backend b\nbackend b\n mode http\n http-request set-header Connection close\n server s app.internal:80\n",
        );
        assert!(toml.contains("deny = 429"), "{toml}");
        assert!(toml.contains("source = [\"198.18.9.0/24\"]"), "{toml}");
        let got: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(got, [5, 8, 12, 13], "{problems:?}");
        assert!(
            toml.contains("# [[pool]]"),
            "a pool without reachable servers is commented out: {toml}"
        );
        assert!(toml.contains("# [[route]]"), "{toml}");
    }

    #[test]
    fn an_unconditional_redirect_leaves_the_rest_unreached_and_backends_forward() {
        let (toml, problems) = run(
            "frontend f\n bind :80\n redirect prefix https://new.example code 301\n default_backend b\nbackend b\n option forwardfor\n server s 198.18.0.1:80\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            toml.contains("redirect = { location = \"https://new.example{uri}\", status = 301 }"),
            "{toml}"
        );
        assert!(
            toml.contains("# never reached: route f-1 before it takes every request"),
            "{toml}"
        );
        assert!(toml.contains("# pool = \"b\""), "{toml}");
        assert!(toml.contains("x-forwarded-for = true"), "{toml}");
    }

    #[test]
    fn tcp_sections_become_tcp_listeners_when_the_key_exists() {
        let cfg = "frontend tls-in\n mode tcp\n bind :443\n tcp-request inspect-delay 5s\n tcp-request content accept if { req_ssl_hello_type 1 }\n acl a req.ssl_sni -i a.example\n use_backend site-a if a\n use_backend site-b if { req.ssl_sni -m end .b.example }\n default_backend site-a\nbackend site-a\n mode tcp\n server a1 198.18.0.21:443 check\nbackend site-b\n mode tcp\n server b1 198.18.0.22:443\nlisten ssh\n mode tcp\n bind 198.18.0.1:22\n balance source\n server s1 198.18.0.31:22 check\n";
        let (_, p) = run(cfg);
        assert_eq!(p.len(), 20, "reported whole without the key: {p:?}");
        let keys = Keys {
            listen_mode_tcp: true,
            ..Keys::NONE
        };
        let mut d = Doc::default();
        let (p, _) = import(
            &[Source {
                name: "h".into(),
                text: cfg.into(),
            }],
            keys,
            &mut d,
        );
        assert!(p.is_empty(), "{p:?}");
        let t = d.render("");
        assert!(
            t.contains("name = \"tls-in\"\naddress = \"0.0.0.0:443\"\nmode = \"tcp\"\npool = \"site-a\"\nsni = { \"a.example\" = \"site-a\", \"*.b.example\" = \"site-b\" }"),
            "{t}"
        );
        assert!(
            t.contains(
                "name = \"ssh\"\naddress = \"198.18.0.1:22\"\nmode = \"tcp\"\npool = \"ssh\""
            ),
            "{t}"
        );
        assert!(
            t.contains("name = \"site-a\"\nhealth = { fall = 3, interval = \"2s\", rise = 2 }"),
            "{t}"
        );
        assert!(!t.contains("[[route]]"), "{t}");
    }

    #[test]
    fn the_usual_https_lines_map_to_floatlb_own_keys() {
        let (toml, problems) = run(
            "frontend f\n bind :80\n bind :443 ssl crt /s.pem\n http-request redirect scheme https unless { ssl_fc }\n http-request set-header X-Forwarded-Proto https if { ssl_fc }\n http-request return status 200 content-type text/plain string ok if { path /ping }\n redirect location /a code 301 if { path /x }\n redirect location /b code 301 if { path /y }\n default_backend b\nbackend b\n server s 198.18.0.1:80\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(toml.contains("redirect-http = true"), "{toml}");
        assert!(toml.contains("x-forwarded-proto = true"), "{toml}");
        assert!(
            toml.contains("path = [\"/ping\"]\nlistener = [\"f\", \"tls\"]\nrespond = { status = 200, content-type = \"text/plain\", body = \"ok\" }")
                || toml.contains("path = [\"/ping\"]\nrespond = { status = 200, content-type = \"text/plain\", body = \"ok\" }"),
            "{toml}"
        );
        // `redirect` lines keep their order.
        let (x, y) = (
            toml.find("location = \"/a\"").unwrap(),
            toml.find("location = \"/b\"").unwrap(),
        );
        assert!(x < y, "{toml}");
    }

    #[test]
    fn names_are_backends_by_name_with_the_resolvers_section() {
        assert_eq!(
            host_port("app.internal:8080").as_deref(),
            Some("app.internal:8080")
        );
        assert_eq!(
            host_port("ipv4@db.lab.:5432").as_deref(),
            Some("db.lab:5432")
        );
        assert_eq!(host_port("app.internal"), None);
        assert_eq!(host_port("-bad.lab:80"), None);
        assert_eq!(host_port("198.18.0.1:80"), None, "an address is no name");
        let cfg = "resolvers dns\n nameserver ns1 198.18.0.53:53\n nameserver ns2 198.18.0.54\n parse-resolv-conf\n hold obsolete 30s\n timeout retry 1s\n resolve_retries 3\nfrontend f\n bind :80\n default_backend b\nbackend b\n server a app.lab:80 check resolvers dns resolve-prefer ipv4 init-addr none\n";
        let keys = Keys {
            backend_names: true,
            ..Keys::NONE
        };
        let mut d = Doc::default();
        let (p, _) = import(
            &[Source {
                name: "h".into(),
                text: cfg.into(),
            }],
            keys,
            &mut d,
        );
        let got: Vec<String> = p
            .iter()
            .map(|p| format!("{}:{}", p.line, p.directive))
            .collect();
        assert_eq!(
            got,
            ["7:resolve_retries 3", "12:server a init-addr none"],
            "{p:?}"
        );
        let t = d.render("");
        assert!(
            t.contains("[resolver]\nnameservers = [\"198.18.0.53:53\", \"198.18.0.54:53\"]\nhold = \"30s\"\ntimeout = \"1s\"\nfamily = \"ipv4\""),
            "{t}"
        );
        assert!(t.contains("name = \"a\"\naddress = \"app.lab:80\""), "{t}");
    }

    #[test]
    fn backend_keys_switch_on_with_their_flags() {
        let cfg = "frontend f\n bind :80\n default_backend b\nbackend b\n server s 198.18.0.1:443 ssl verify required ca-file /ca.pem sni str(api.example) send-proxy-v2\n";
        let (_, p) = run(cfg);
        assert_eq!(p.len(), 5, "{p:?}");
        let mut keys = Keys::NONE;
        keys.pool_tls = true;
        keys.pool_send_proxy = true;
        let mut d = Doc::default();
        let (p, _) = import(
            &[Source {
                name: "h".into(),
                text: cfg.into(),
            }],
            keys,
            &mut d,
        );
        assert!(p.is_empty(), "{p:?}");
        let t = d.render("");
        assert!(t.contains("send-proxy = \"v2\""), "{t}");
        assert!(
            t.contains("tls = { verify = true, ca = \"/ca.pem\", server-name = \"api.example\" }"),
            "{t}"
        );
    }
}
