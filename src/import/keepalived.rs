//! `keepalived.conf` to `[[vrrp]]` tables: the tokenizer (words, `{ }` blocks, `#`/`!`
//! comments, quoted strings), `include` followed through the caller's loader, then the
//! mapping of `vrrp_instance`, `vrrp_sync_group` and `vrrp_script`.
//!
//! Not for: LVS (`virtual_server`), which floatlb does not do; those blocks are reported.

use std::net::IpAddr;

use super::toml_out::{list, quote, Doc, Kind, Table};
use super::{Keys, Loader, Problem, Source, NOT_YET};

/// One statement: its words, and its block when it opens one.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub file: usize,
    pub line: usize,
    pub words: Vec<String>,
    pub block: Option<Vec<Node>>,
}

impl Node {
    fn key(&self) -> &str {
        self.words.first().map(|s| s.as_str()).unwrap_or("")
    }
    fn arg(&self, i: usize) -> &str {
        self.words.get(i).map(|s| s.as_str()).unwrap_or("")
    }
    fn text(&self) -> String {
        let mut t = self.words.join(" ");
        if self.block.is_some() {
            t.push_str(" { ... }");
        }
        t
    }
    /// Statements in the block, counted deep.
    fn size(&self) -> usize {
        self.block.iter().flatten().map(|n| 1 + n.size()).sum()
    }
}

/// Splits keepalived text into `(line, word)`; `{` and `}` are words of their own.
pub(crate) fn tokenize(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut cur = String::new();
        let mut chars = raw.chars().peekable();
        let flush = |cur: &mut String, out: &mut Vec<(usize, String)>| {
            if !cur.is_empty() {
                out.push((i + 1, std::mem::take(cur)));
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' | '!' if cur.is_empty() => break,
                ' ' | '\t' | '\r' => flush(&mut cur, &mut out),
                '{' | '}' => {
                    flush(&mut cur, &mut out);
                    out.push((i + 1, c.to_string()));
                }
                '"' => {
                    for n in chars.by_ref() {
                        if n == '"' {
                            break;
                        }
                        cur.push(n);
                    }
                    if cur.is_empty() {
                        // An empty quoted word stays a word.
                        out.push((i + 1, String::new()));
                    }
                }
                c => cur.push(c),
            }
        }
        flush(&mut cur, &mut out);
    }
    out
}

/// Statements from tokens: the words of one line up to `{` or `}`; `{` opens a block.
fn parse(file: usize, toks: &[(usize, String)], at: &mut usize) -> Vec<Node> {
    let mut out = Vec::new();
    while *at < toks.len() {
        let (line, w) = &toks[*at];
        if w == "}" {
            *at += 1;
            return out;
        }
        if w == "{" {
            *at += 1;
            let block = parse(file, toks, at);
            out.push(Node {
                file,
                line: *line,
                words: Vec::new(),
                block: Some(block),
            });
            continue;
        }
        let mut words = Vec::new();
        while *at < toks.len() && toks[*at].0 == *line && toks[*at].1 != "{" && toks[*at].1 != "}" {
            words.push(toks[*at].1.clone());
            *at += 1;
        }
        let block = if *at < toks.len() && toks[*at].1 == "{" {
            *at += 1;
            Some(parse(file, toks, at))
        } else {
            None
        };
        out.push(Node {
            file,
            line: *line,
            words,
            block,
        });
    }
    out
}

struct Ctx<'a, 'b> {
    files: Vec<Source>,
    keys: Keys,
    problems: Vec<(usize, usize, Problem)>,
    mapped: usize,
    load: &'a mut Loader<'b>,
}

impl Ctx<'_, '_> {
    fn skip_as(&mut self, n: &Node, directive: &str, reason: &str, notes: &mut Vec<String>) {
        let p = Problem {
            file: self.files[n.file].name.clone(),
            line: n.line,
            directive: directive.to_string(),
            reason: reason.to_string(),
        };
        notes.push(format!("not imported: {p}"));
        self.problems.push((n.file, n.line, p));
    }
    fn skip(&mut self, n: &Node, reason: &str, notes: &mut Vec<String>) {
        self.skip_as(n, &n.text(), reason, notes);
    }
    fn ok(&mut self) {
        self.mapped += 1;
    }

    /// Reads a file into statements, `include`s replaced by what they name.
    fn read(&mut self, file: usize, depth: usize, notes: &mut Vec<String>) -> Vec<Node> {
        let toks = tokenize(&self.files[file].text);
        let mut at = 0;
        let nodes = parse(file, &toks, &mut at);
        self.expand(nodes, depth, notes)
    }

    fn expand(&mut self, nodes: Vec<Node>, depth: usize, notes: &mut Vec<String>) -> Vec<Node> {
        let mut out = Vec::new();
        for mut n in nodes {
            if n.key() == "include" && n.block.is_none() {
                if depth >= 8 {
                    self.skip(&n, "includes nested more than 8 deep", notes);
                    continue;
                }
                let from = self.files[n.file].name.clone();
                match (self.load)(n.arg(1), &from) {
                    Ok(srcs) => {
                        self.ok();
                        for s in srcs {
                            self.files.push(s);
                            let fi = self.files.len() - 1;
                            out.extend(self.read(fi, depth + 1, notes));
                        }
                    }
                    Err(e) => self.skip(&n, &format!("cannot be read: {e}"), notes),
                }
                continue;
            }
            if n.key().starts_with('@') {
                self.skip(
                    &n,
                    "conditional configuration (@name) is not evaluated",
                    notes,
                );
                continue;
            }
            if let Some(b) = n.block.take() {
                n.block = Some(self.expand(b, depth, notes));
            }
            out.push(n);
        }
        out
    }
}

/// A `vrrp_script` block.
#[derive(Debug, Clone, Default)]
struct Script {
    entries: Vec<(String, String)>,
    has_weight: bool,
}

fn num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0)
}

fn secs(s: &str) -> Option<String> {
    num(s).map(|n| super::ms_to_duration((n * 1000.0).round() as u64))
}

/// Maps the file (and its includes) into `doc`.
pub(crate) fn import(
    src: &Source,
    load: &mut Loader<'_>,
    keys: Keys,
    doc: &mut Doc,
) -> (Vec<Problem>, usize) {
    let mut ctx = Ctx {
        files: vec![src.clone()],
        keys,
        problems: Vec::new(),
        mapped: 0,
        load,
    };
    let mut top = Vec::new();
    let nodes = ctx.read(0, 0, &mut top);
    let mut scripts: Vec<(String, Script)> = Vec::new();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let instances: Vec<&str> = nodes
        .iter()
        .filter(|n| n.key() == "vrrp_instance")
        .map(|n| n.arg(1))
        .collect();
    // Scripts and groups first: instances name them, before or after.
    for n in &nodes {
        match n.key() {
            "vrrp_script" => {
                let mut s = Script::default();
                let mut notes = Vec::new();
                for c in n.block.iter().flatten() {
                    let v = c.arg(1);
                    let e = match c.key() {
                        // keepalived splits the command itself; floatlb at spaces only.
                        "script"
                            if !c
                                .words
                                .get(1..)
                                .unwrap_or_default()
                                .iter()
                                .any(|w| w.contains(['\'', '"'])) =>
                        {
                            Some((
                                "command",
                                quote(&c.words.get(1..).unwrap_or_default().join(" ")),
                            ))
                        }
                        "interval" => secs(v).map(|d| ("interval", quote(&d))),
                        "timeout" => secs(v).map(|d| ("timeout", quote(&d))),
                        "rise" | "fall" => v.parse::<u32>().ok().map(|x| (c.key(), x.to_string())),
                        "weight" if c.words.len() == 2 => v.parse::<i32>().ok().map(|x| {
                            s.has_weight = true;
                            ("weight", x.to_string())
                        }),
                        _ => None,
                    };
                    match e {
                        Some((k, v)) => {
                            s.entries.retain(|(x, _)| x != k);
                            s.entries.push((k.to_string(), v));
                            ctx.ok();
                        }
                        None => {
                            let why = match c.key() {
                                "user" => "the script runs as floatlb's user",
                                "script" => "quotes inside the command: floatlb splits a command at spaces only; write it as an argv list",
                                "init_fail" => "floatlb starts a script as passing",
                                "weight" => "`weight N reverse` is not supported",
                                _ => "not a track-script key floatlb has",
                            };
                            ctx.skip(c, why, &mut notes);
                        }
                    }
                }
                if !s.entries.iter().any(|(k, _)| k == "interval") {
                    // keepalived's default; floatlb's is 2s.
                    s.entries.push(("interval".into(), quote("1s")));
                }
                ctx.ok();
                top.append(&mut notes);
                scripts.push((n.arg(1).to_string(), s));
            }
            "vrrp_sync_group" => {
                let mut members = Vec::new();
                for c in n.block.iter().flatten() {
                    let bare_member = c.block.is_none()
                        && c.words.len() == 1
                        && !c.key().starts_with("notify")
                        && !c.key().starts_with("smtp")
                        && !c.key().starts_with("global");
                    if bare_member {
                        // The old form: member names right in the group's block.
                        members.push((c.key().to_string(), c.clone()));
                    } else if c.key() == "group" {
                        for m in c.block.iter().flatten() {
                            members.extend(m.words.iter().map(|w| (w.clone(), m.clone())));
                        }
                        ctx.ok();
                    } else {
                        let why = if c.key().starts_with("notify") {
                            "a sync group's own notify: floatlb calls each instance's notify"
                        } else {
                            "no floatlb counterpart in a group"
                        };
                        ctx.skip(c, why, &mut top);
                    }
                }
                ctx.ok();
                // A member is an instance of the file, else it is reported.
                let mut names = Vec::new();
                for (m, node) in members {
                    if instances.contains(&m.as_str()) {
                        ctx.ok();
                        names.push(m);
                    } else {
                        ctx.skip_as(&node, &m, "no vrrp_instance of that name", &mut top);
                    }
                }
                groups.push((n.arg(1).to_string(), names));
            }
            _ => {}
        }
    }
    let group_of = |inst: &str| {
        groups
            .iter()
            .find(|(_, m)| m.iter().any(|x| x == inst))
            .map(|(g, _)| g.clone())
    };
    for n in &nodes {
        match n.key() {
            "vrrp_script" | "vrrp_sync_group" => {}
            "vrrp_instance" => {
                ctx.ok();
                let tables = instance(n, &scripts, group_of(n.arg(1)), &mut ctx);
                for t in tables {
                    doc.push(t);
                }
            }
            "global_defs" => {
                for c in n.block.iter().flatten() {
                    match (c.key(), c.arg(1)) {
                        ("vrrp_version", "3") => ctx.ok(),
                        ("vrrp_version", _) => ctx.skip(c, "floatlb speaks VRRPv3 (RFC 5798) only", &mut top),
                        ("router_id", _) => ctx.skip(c, "floatlb names its instances vrrp<N>-<vrid>; no router id", &mut top),
                        (k, _) if k.starts_with("notification_email") || k.starts_with("smtp_") => {
                            ctx.skip(c, "floatlb sends no mail: alert on its metrics (grafana/alerts.yml)", &mut top)
                        }
                        ("enable_script_security", _) | ("script_user", _) => {
                            ctx.skip(c, "scripts run as floatlb's user", &mut top)
                        }
                        (k, _) if k.starts_with("vrrp_garp") || k.starts_with("vrrp_gna") => ctx.skip(
                            c,
                            "set garp-count, garp-interval and garp-refresh on each [[vrrp]] table",
                            &mut top,
                        ),
                        ("vrrp_strict", _) => ctx.skip(c, "floatlb follows RFC 5798 and accepts traffic to its VIPs (it serves them)", &mut top),
                        _ => ctx.skip(c, "a keepalived process setting with no floatlb counterpart", &mut top),
                    }
                }
                ctx.ok();
            }
            "virtual_server" | "virtual_server_group" => ctx.skip_as(
                n,
                &n.text(),
                &format!(
                    "LVS (a block of {} lines): floatlb is a proxy, not an LVS director (kernel IPVS); write the real servers as a [[pool]]",
                    n.size()
                ),
                &mut top,
            ),
            "static_ipaddress" | "static_routes" | "static_rules" => ctx.skip(
                n,
                "floatlb manages only its VIPs: configure static addresses and routes in the system's network setup",
                &mut top,
            ),
            k if k.starts_with('@') || k.starts_with('$') => ctx.skip(n, "conditional configuration and definitions are not evaluated", &mut top),
            "vrrp_track_process" | "track_file" | "vrrp_track_file" | "track_process" | "track_bfd" | "bfd_instance" => {
                ctx.skip(n, "floatlb tracks scripts and interfaces only", &mut top)
            }
            _ => ctx.skip(n, "no floatlb counterpart", &mut top),
        }
    }
    doc.notes.append(&mut top);
    let mut problems = ctx.problems;
    problems.sort_by_key(|(f, l, _)| (*f, *l));
    (
        problems.into_iter().map(|(_, _, p)| p).collect(),
        ctx.mapped,
    )
}

/// One `vrrp_instance` to one `[[vrrp]]` table, or two when it holds both IPv4 and IPv6 VIPs.
fn instance(
    n: &Node,
    scripts: &[(String, Script)],
    group: Option<String>,
    ctx: &mut Ctx<'_, '_>,
) -> Vec<Table> {
    let name = n.arg(1).to_string();
    let mut t = Table::new(Kind::Vrrp, "[[vrrp]]");
    t.note(format!("vrrp_instance {name}"));
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut priority = "100".to_string();
    let mut vrid = None;
    let mut interface = None;
    for c in n.block.iter().flatten() {
        let v = c.arg(1);
        let mut mapped = true;
        match c.key() {
            "interface" => interface = Some(v.to_string()),
            "virtual_router_id" => vrid = Some(v.to_string()),
            "priority" => priority = v.to_string(),
            "state" => t.note(format!(
                "state {v}: floatlb starts as backup and elects by priority"
            )),
            "advert_int" => match num(v).map(|s| ((s * 100.0).round() as u64).saturating_mul(10)) {
                Some(ms) if (10..=40950).contains(&ms) => {
                    t.set("advert-interval", quote(&super::ms_to_duration(ms)))
                }
                _ => {
                    mapped = false;
                    ctx.skip(
                        c,
                        "floatlb's advert interval is 10 ms to 40.95 s",
                        &mut t.comments,
                    );
                }
            },
            "nopreempt" => t.set("preempt", "false".into()),
            "preempt" => t.set("preempt", "true".into()),
            "preempt_delay" => match secs(v) {
                Some(d) => t.set("preempt-delay", quote(&d)),
                None => {
                    mapped = false;
                    ctx.skip(c, "not a number of seconds", &mut t.comments);
                }
            },
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                if c.key() == "virtual_ipaddress_excluded" {
                    t.note("virtual_ipaddress_excluded: floatlb adds these like the others and lists them in its adverts".into());
                }
                for a in c.block.iter().flatten() {
                    let addr = a.key();
                    let ip = addr.split('/').next().unwrap_or("");
                    match ip.parse::<IpAddr>() {
                        Ok(ip) => {
                            let mut extra: Vec<&str> = a
                                .words
                                .get(1..)
                                .unwrap_or_default()
                                .iter()
                                .map(|s| s.as_str())
                                .collect();
                            // `dev <interface>` naming the instance's own interface is the default.
                            if let Some(i) = extra.iter().position(|x| *x == "dev") {
                                if extra.get(i + 1).copied() == interface.as_deref() {
                                    extra.drain(i..(i + 2).min(extra.len()));
                                }
                            }
                            if !extra.is_empty() {
                                ctx.skip_as(
                                    a,
                                    &a.text(),
                                    &format!("imported as {addr}; `{}` not supported (floatlb puts VIPs on the instance's interface, no label, scope or broadcast)", extra.join(" ")),
                                    &mut t.comments,
                                );
                            } else {
                                ctx.ok();
                            }
                            let family = if ip.is_ipv4() { &mut v4 } else { &mut v6 };
                            if !family.iter().any(|x| x == addr) {
                                family.push(addr.to_string());
                            }
                        }
                        Err(_) => ctx.skip(a, "not an IP address", &mut t.comments),
                    }
                }
            }
            "unicast_peer" => {
                let mut peers = Vec::new();
                for p in c.block.iter().flatten() {
                    for w in &p.words {
                        match w.parse::<IpAddr>() {
                            Ok(_) => peers.push(w.clone()),
                            Err(_) if peers.is_empty() => {
                                ctx.skip(p, "not an IP address", &mut t.comments)
                            }
                            Err(_) => ctx.skip_as(
                                p,
                                w,
                                "peer options (min_ttl, max_ttl) not supported",
                                &mut t.comments,
                            ),
                        }
                    }
                }
                t.set("unicast-peers", list(&peers));
            }
            "track_script" | "track_interface" => {
                let script = c.key() == "track_script";
                let on = if script {
                    ctx.keys.vrrp_track_script
                } else {
                    ctx.keys.vrrp_track_interface
                };
                for e in c.block.iter().flatten() {
                    let what = e.key();
                    let weight = match (e.arg(1), e.arg(2).parse::<i32>()) {
                        ("weight", Ok(w)) => Some(w),
                        ("", _) => None,
                        _ => {
                            ctx.skip(e, "only `weight N` may follow the name", &mut t.comments);
                            continue;
                        }
                    };
                    if !on {
                        ctx.skip_as(
                            e,
                            &format!("{} {}", c.key(), e.text()),
                            NOT_YET,
                            &mut t.comments,
                        );
                        continue;
                    }
                    let mut sub = if script {
                        let Some((_, s)) = scripts.iter().find(|(n, _)| n == what) else {
                            ctx.skip(e, "no vrrp_script of that name", &mut t.comments);
                            continue;
                        };
                        if !s.entries.iter().any(|(k, _)| k == "command") {
                            ctx.skip(
                                e,
                                "its vrrp_script has no `script` line that could be imported",
                                &mut t.comments,
                            );
                            continue;
                        }
                        let mut st = Table::new(Kind::Vrrp, "[[vrrp.track-script]]");
                        st.set("name", quote(what));
                        for (k, v) in &s.entries {
                            st.set(k, v.clone());
                        }
                        st
                    } else {
                        let mut st = Table::new(Kind::Vrrp, "[[vrrp.track-interface]]");
                        st.set("name", quote(what));
                        st
                    };
                    if let Some(w) = weight {
                        sub.set("weight", w.to_string());
                    }
                    ctx.ok();
                    t.children.push(sub);
                }
            }
            k @ ("notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop") => {
                let cmd = c.words.get(1..).unwrap_or_default().join(" ");
                let (on, key) = if k == "notify" {
                    (
                        ctx.keys.vrrp_notify_keepalived,
                        "notify-keepalived".to_string(),
                    )
                } else {
                    (ctx.keys.vrrp_notify_states, k.replace('_', "-"))
                };
                if on {
                    t.set(&key, quote(&cmd));
                } else {
                    mapped = false;
                    let why = if k == "notify" {
                        format!("keepalived's calling convention (TYPE NAME STATE PRIORITY): {NOT_YET}; floatlb's own `notify` is called as `<instance> <STATE>`")
                    } else {
                        NOT_YET.to_string()
                    };
                    ctx.skip(c, &why, &mut t.comments);
                }
            }
            "use_vmac" => {
                if ctx.keys.vrrp_use_vmac {
                    t.set("use-vmac", "true".into());
                    if c.words.len() > 1 {
                        t.set("vmac-interface", quote(v));
                    }
                } else {
                    mapped = false;
                    ctx.skip(c, NOT_YET, &mut t.comments);
                }
            }
            "garp_master_repeat" => match v.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => t.set("garp-count", n.to_string()),
                _ => {
                    mapped = false;
                    ctx.skip(c, "floatlb sends 1 to 100 per burst", &mut t.comments);
                }
            },
            "garp_master_refresh" => match secs(v) {
                Some(d) => t.set("garp-refresh", quote(&d)),
                None => {
                    mapped = false;
                    ctx.skip(c, "not a number of seconds", &mut t.comments);
                }
            },
            "garp_interval" | "gna_interval" => match secs(v) {
                Some(d) => t.set("garp-interval", quote(&d)),
                None => {
                    mapped = false;
                    ctx.skip(c, "not a number of seconds", &mut t.comments);
                }
            },
            "native_ipv6" => {}
            "version" if v == "3" => {}
            _ => {
                mapped = false;
                let why = match c.key() {
                    "authentication" => "VRRPv3 (RFC 5798) has no authentication; keepalived ignores it with vrrp_version 3",
                    "unicast_src_ip" => "floatlb sends adverts from the interface's own address",
                    "mcast_src_ip" => "floatlb sends adverts from the interface's own address",
                    "dont_track_primary" => "floatlb always tracks the VRRP interface's link",
                    "garp_master_delay" | "garp_lower_prio_delay" | "garp_lower_prio_repeat" => {
                        "floatlb sends one burst on becoming master (garp-count, garp-interval) and refreshes with garp-refresh"
                    }
                    "smtp_alert" => "floatlb sends no mail: alert on its metrics (grafana/alerts.yml)",
                    "virtual_routes" | "virtual_rules" => "floatlb moves only addresses, not routes or rules",
                    "lvs_sync_daemon_interface" => "floatlb does not do LVS",
                    "version" => "floatlb speaks VRRPv3 only",
                    "accept" | "no_accept" => "floatlb always accepts traffic to its VIPs (it serves them)",
                    "vmac_xmit_base" => "floatlb sends from the VMAC",
                    "track_process" | "track_file" | "track_bfd" => "floatlb tracks scripts and interfaces only",
                    "debug" => "use floatlb run --log floatlb=debug",
                    _ => "no floatlb counterpart",
                };
                ctx.skip(c, why, &mut t.comments);
            }
        }
        if mapped
            && !matches!(
                c.key(),
                "virtual_ipaddress"
                    | "virtual_ipaddress_excluded"
                    | "track_script"
                    | "track_interface"
            )
        {
            ctx.ok();
        }
    }
    let mut missing = Vec::new();
    match &interface {
        Some(i) => t.entries.insert(0, ("interface".into(), quote(i))),
        None => missing.push("interface"),
    }
    match vrid.as_deref().map(str::parse::<u32>) {
        Some(Ok(v)) => t
            .entries
            .insert(1.min(t.entries.len()), ("vrid".into(), v.to_string())),
        _ => missing.push("virtual_router_id"),
    }
    t.entries
        .insert(2.min(t.entries.len()), ("priority".into(), priority));
    if v4.is_empty() && v6.is_empty() {
        missing.push("virtual_ipaddress");
    }
    if !missing.is_empty() {
        ctx.skip_as(
            n,
            &format!("vrrp_instance {name}"),
            &format!("left out: no {}", missing.join(", no ")),
            &mut t.comments,
        );
        t.commented_out = true;
        return vec![t];
    }
    if ctx.keys.vrrp_name {
        t.entries.insert(0, ("name".into(), quote(&name)));
    }
    let both = !v4.is_empty() && !v6.is_empty();
    let group = group.or_else(|| both.then(|| name.clone()));
    if let Some(g) = &group {
        t.set("group", quote(g));
    }
    let mut out = Vec::new();
    if !v6.is_empty() {
        let mut t6 = t.clone();
        if both {
            t6.comments = vec![format!(
                "vrrp_instance {name}: its IPv6 addresses (VRRPv3 runs one virtual router per family)"
            )];
        }
        t6.set("virtual-addresses", list(&v6));
        if both && ctx.keys.vrrp_name {
            t6.set("name", quote(&format!("{name}-v6")));
        }
        if both && t6.get("use-vmac").is_some() {
            // Each family has its own virtual MAC, so its own macvlan.
            let v = match t6.get("vmac-interface") {
                Some(n) => {
                    let n = n.trim_matches('"');
                    format!("{}6", &n[..n.len().min(14)])
                }
                None => format!("vrrp6.{}", vrid.as_deref().unwrap_or("")),
            };
            t6.set("vmac-interface", quote(&v));
        }
        if let Some(p) = t6.get("unicast-peers").map(String::from) {
            if p.contains('.') {
                t6.entries.retain(|(k, _)| k != "unicast-peers");
            }
        }
        out.push(t6);
    }
    if !v4.is_empty() {
        t.set("virtual-addresses", list(&v4));
        if both {
            if let Some(p) = t.get("unicast-peers").map(String::from) {
                if p.contains(':') {
                    t.entries.retain(|(k, _)| k != "unicast-peers");
                }
            }
        }
        out.insert(0, t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, includes: &[(&str, &str)]) -> (String, Vec<Problem>) {
        let mut d = Doc::default();
        let inc: Vec<(String, String)> = includes
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let mut load = move |p: &str, _: &str| {
            inc.iter()
                .find(|(n, _)| n == p)
                .map(|(n, t)| {
                    vec![Source {
                        name: n.clone(),
                        text: t.clone(),
                    }]
                })
                .ok_or_else(|| format!("{p}: no such file"))
        };
        let (p, _) = import(
            &Source {
                name: "k.conf".into(),
                text: text.into(),
            },
            &mut load,
            Keys::NONE,
            &mut d,
        );
        (d.render(""), p)
    }

    /// Statements, braces and stray characters in any order: never a panic.
    #[test]
    fn any_input_imports_without_panicking() {
        let words = [
            "vrrp_instance V",
            "vrrp_script s",
            "vrrp_sync_group g",
            "group",
            "{",
            "}",
            "interface",
            "lo",
            "virtual_router_id",
            "999",
            "priority",
            "advert_int",
            "1e300",
            "-1",
            "virtual_ipaddress",
            "198.18.0.1/24",
            "2001:2::1/64",
            "dev",
            "label",
            "track_script",
            "s",
            "weight",
            "track_interface",
            "notify",
            "notify_master",
            "\"",
            "!",
            "#",
            "include",
            "x.conf",
            "@a",
            "use_vmac",
            "script",
            "'q'",
            "unicast_peer",
            "global_defs",
            "virtual_server",
            "preempt_delay",
            "nopreempt",
        ];
        let mut rand = crate::test_util::xorshift(11);
        for round in 0..300 {
            let mut text = String::new();
            for _ in 0..rand(30) {
                for _ in 0..rand(6) {
                    text.push_str(words[rand(words.len() as u64) as usize]);
                    text.push(' ');
                }
                text.push('\n');
            }
            let mut d = Doc::default();
            // An include that includes itself stops at the depth bound.
            let again = text.clone();
            let mut load = move |p: &str, _: &str| {
                Ok(vec![Source {
                    name: p.into(),
                    text: again.clone(),
                }])
            };
            let src = Source {
                name: format!("r{round}"),
                text,
            };
            let _ = import(&src, &mut load, Keys::CURRENT, &mut d);
            let _ = d.render("");
        }
    }

    /// Nothing is dropped without a word: an unknown statement put after any line of the
    /// test configuration, at any depth, is reported at its own line.
    #[test]
    fn an_unknown_statement_anywhere_is_reported_at_its_line() {
        let base = include_str!("../../tests/data/import/keepalived.conf");
        let lines: Vec<&str> = base.lines().collect();
        for at in 0..lines.len() {
            let mut text: Vec<&str> = lines.clone();
            text.insert(at + 1, "zzz_unknown_statement 1");
            let src = Source {
                name: "k.conf".into(),
                text: text.join("\n"),
            };
            let mut load = |_: &str, _: &str| Ok(Vec::new());
            let (p, _) = import(&src, &mut load, Keys::CURRENT, &mut Doc::default());
            // Reported at its line, or inside a block reported whole (`name { ... }`).
            let whole_block = |p: &Problem| p.directive.ends_with("{ ... }") && p.line < at + 2;
            assert!(
                p.iter().any(|p| {
                    p.line == at + 2 && p.directive.starts_with("zzz_unknown_statement")
                        || whole_block(p)
                            && lines[p.line - 1..=at]
                                .iter()
                                .map(|l| {
                                    l.matches('{').count() as i64 - l.matches('}').count() as i64
                                })
                                .sum::<i64>()
                                > 0
                }),
                "after line {}: {p:?}",
                at + 1
            );
        }
    }

    #[test]
    fn tokens_split_braces_and_comments() {
        let t: Vec<String> = tokenize("vrrp_instance VI_1 {# c\n  script \"/bin/x a\"\n}! x\n")
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(t, ["vrrp_instance", "VI_1", "{", "script", "/bin/x a", "}"]);
    }

    #[test]
    fn blocks_nest_and_one_line_blocks_work() {
        let toks = tokenize("a 1 {\n b { x y }\n c\n}\nd\n");
        let mut at = 0;
        let n = parse(0, &toks, &mut at);
        assert_eq!(n.len(), 2);
        let b = n[0].block.as_ref().unwrap();
        assert_eq!(b[0].words, ["b"]);
        assert_eq!(b[0].block.as_ref().unwrap()[0].words, ["x", "y"]);
        assert_eq!(b[1].words, ["c"]);
        assert_eq!(n[1].line, 5);
    }

    #[test]
    fn an_instance_becomes_a_vrrp_table() {
        let (t, p) = run(
            "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 0.1\n nopreempt\n\
             authentication {\n auth_type PASS\n auth_pass x\n }\n unicast_peer {\n 198.18.0.2\n }\n virtual_ipaddress {\n 198.18.0.100/24 dev eth0\n 2001:2::100/64\n }\n}\n",
            &[],
        );
        assert!(t.contains("[[vrrp]]\ninterface = \"eth0\"\nvrid = 51\npriority = 150\nadvert-interval = \"100ms\"\npreempt = false\nunicast-peers = [\"198.18.0.2\"]\ngroup = \"VI_1\"\nvirtual-addresses = [\"198.18.0.100/24\"]"), "{t}");
        assert!(
            t.contains("virtual-addresses = [\"2001:2::100/64\"]"),
            "{t}"
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            (p[0].line, p[0].directive.as_str()),
            (8, "authentication { ... }")
        );
    }

    #[test]
    fn includes_are_followed_and_unknowns_reported_with_their_file() {
        let (t, p) = run(
            "global_defs {\n router_id lb1\n}\ninclude inst.conf\ninclude missing.conf\n",
            &[("inst.conf", "vrrp_sync_group G {\n group {\n VI_1\n }\n}\nvrrp_instance VI_1 {\n interface lo\n virtual_router_id 7\n virtual_ipaddress {\n 198.18.0.100\n }\n notify_master /bin/up\n}\nvirtual_server 198.18.0.100 80 {\n real_server 198.18.0.11 80 {\n weight 1\n }\n}\n")],
        );
        assert!(t.contains("vrid = 7\npriority = 100\ngroup = \"G\""), "{t}");
        let got: Vec<String> = p.iter().map(|x| format!("{}:{}", x.file, x.line)).collect();
        assert_eq!(
            got,
            ["k.conf:2", "k.conf:5", "inst.conf:12", "inst.conf:14"],
            "{p:?}"
        );
        assert!(p[3].reason.contains("LVS (a block of 2 lines)"), "{p:?}");
    }

    #[test]
    fn tracking_and_notify_map_when_the_keys_exist() {
        let text = "vrrp_script chk {\n script \"/usr/bin/check web\"\n interval 2\n fall 2\n rise 3\n}\nvrrp_instance V {\n interface lo\n virtual_router_id 9\n virtual_ipaddress {\n 198.18.0.1/32\n }\n track_script {\n chk weight -20\n }\n track_interface {\n eth1 weight 10\n }\n notify /bin/n\n use_vmac\n}\n";
        let (_, p) = run(text, &[]);
        assert_eq!(p.len(), 4, "{p:?}");
        let keys = Keys {
            vrrp_track_script: true,
            vrrp_track_interface: true,
            vrrp_notify_keepalived: true,
            vrrp_use_vmac: true,
            ..Keys::NONE
        };
        let mut d = Doc::default();
        let mut load = |_: &str, _: &str| Err("none".to_string());
        let (p, _) = import(
            &Source {
                name: "k".into(),
                text: text.into(),
            },
            &mut load,
            keys,
            &mut d,
        );
        assert!(p.is_empty(), "{p:?}");
        let t = d.render("");
        assert!(t.contains("[[vrrp.track-script]]\nname = \"chk\"\ncommand = \"/usr/bin/check web\"\ninterval = \"2s\"\nfall = 2\nrise = 3\nweight = -20"), "{t}");
        assert!(
            t.contains("[[vrrp.track-interface]]\nname = \"eth1\"\nweight = 10"),
            "{t}"
        );
        assert!(
            t.contains("notify-keepalived = \"/bin/n\"\nuse-vmac = true"),
            "{t}"
        );
    }
}
