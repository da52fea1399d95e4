//! What the daemon adds to the admin listener (VRRP state, the planned
//! handover, an upgrade, the supervisor's families): one trait the admin
//! listener and the exposition both call, so neither imports the other for it.

/// What the daemon adds to the admin listener (VRRP state, handover).
pub trait AdminHooks: Send + Sync {
    /// Extra families for `/metrics`.
    fn metrics(&self, _families: &crate::observe::metrics::Families) {}
    /// Extra JSON object members for `/status.json`, without surrounding braces.
    fn status_json(&self) -> Option<String> {
        None
    }
    /// `POST /admin/handover`: step down as VRRP master. Returns a message.
    fn handover(&self) -> Result<String, String> {
        Err("this node runs no VRRP instance".into())
    }
    /// `POST /admin/resume`: announce the anycast VIPs again after a handover.
    fn resume(&self) -> Result<String, String> {
        Err("this node has no [[anycast]] VIP".into())
    }
    /// Families rendered elsewhere (the supervisor's), in the text format.
    fn metrics_text(&self) -> Option<String> {
        None
    }
    /// `POST /admin/reload`: the worker's reload, as on SIGHUP. Blocking;
    /// the message, or why the file was refused.
    fn reload(&self) -> Result<String, String> {
        Err("no worker loop to reload through".into())
    }
    /// `POST /admin/upgrade`: a new worker from the binary on disk. Blocking.
    fn upgrade(&self) -> Result<String, String> {
        Err("no supervisor to upgrade through".into())
    }
}
