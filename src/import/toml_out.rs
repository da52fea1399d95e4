//! The `proxy.toml` an import writes: tables in floatlb's usual order, each with the
//! comments (what was not imported, notes) written just above it.

/// Where a table goes in the file; tables are written in this order, then in the order made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Listen,
    Tls,
    Timeouts,
    Proxy,
    Resolver,
    Log,
    Pool,
    Route,
    Vrrp,
}

/// One table (`[x]` or `[[x]]`) with its keys, its comments and its sub-tables.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub kind: Kind,
    pub header: String,
    pub comments: Vec<String>,
    pub entries: Vec<(String, String)>,
    pub children: Vec<Table>,
    /// Written as comments only (a table that could not be made valid).
    pub commented_out: bool,
}

impl Table {
    pub fn new(kind: Kind, header: &str) -> Table {
        Table {
            kind,
            header: header.to_string(),
            comments: Vec::new(),
            entries: Vec::new(),
            children: Vec::new(),
            commented_out: false,
        }
    }

    /// Sets `key` to the TOML value `value`, replacing an earlier one.
    pub fn set(&mut self, key: &str, value: String) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn note(&mut self, text: String) {
        self.comments.push(text);
    }

    fn render(&self, out: &mut String) {
        out.push('\n');
        for c in &self.comments {
            for l in c.lines() {
                out.push_str("# ");
                out.push_str(l);
                out.push('\n');
            }
        }
        let p = if self.commented_out { "# " } else { "" };
        out.push_str(&format!("{p}{}\n", self.header));
        for (k, v) in &self.entries {
            out.push_str(&format!("{p}{k} = {v}\n"));
        }
        for c in &self.children {
            let mut c = c.clone();
            c.commented_out |= self.commented_out;
            c.render(out);
        }
    }
}

/// The whole file being made.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    /// Comments for the top of the file (sections that made no table).
    pub notes: Vec<String>,
    pub tables: Vec<Table>,
}

impl Doc {
    pub fn push(&mut self, t: Table) {
        self.tables.push(t);
    }

    pub fn render(&self, head: &str) -> String {
        let mut out = head.to_string();
        for n in &self.notes {
            for l in n.lines() {
                out.push_str("# ");
                out.push_str(l);
                out.push('\n');
            }
        }
        let mut tables: Vec<&Table> = self.tables.iter().collect();
        tables.sort_by_key(|t| t.kind);
        for t in tables {
            t.render(&mut out);
        }
        out
    }
}

/// `s` as a TOML basic string.
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A TOML array of strings.
pub(crate) fn list<S: AsRef<str>>(items: &[S]) -> String {
    let v: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", v.join(", "))
}

/// A TOML inline table from rendered values.
pub(crate) fn inline(entries: &[(String, String)]) -> String {
    let v: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{} = {v}", key(k)))
        .collect();
    format!("{{ {} }}", v.join(", "))
}

/// A key, quoted when it is not a bare key.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(quote("\u{1}"), "\"\\u0001\"");
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(key("X-Api"), "X-Api");
        assert_eq!(key("a b"), "\"a b\"");
        assert_eq!(
            inline(&[("set".into(), "1".into()), ("x.y".into(), "2".into())]),
            "{ set = 1, \"x.y\" = 2 }"
        );
    }

    #[test]
    fn tables_come_out_in_floatlb_order_with_their_comments() {
        let mut d = Doc::default();
        let mut r = Table::new(Kind::Route, "[[route]]");
        r.set("pool", quote("a"));
        d.push(r);
        let mut l = Table::new(Kind::Listen, "[[listen]]");
        l.note("not imported: x".into());
        l.set("address", quote("0.0.0.0:80"));
        d.push(l);
        let s = d.render("# head\n");
        assert_eq!(
            s,
            "# head\n\n# not imported: x\n[[listen]]\naddress = \"0.0.0.0:80\"\n\n[[route]]\npool = \"a\"\n"
        );
    }
}
