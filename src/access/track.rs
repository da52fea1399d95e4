//! Per-client tracking, as HAProxy's stick tables: a table of clients keyed
//! by address (or by a header's or a cookie's value), each entry holding the
//! client's open connections, its request and error rates over a sliding
//! period (HAProxy's `freq_ctr`: this period's count plus the last one's,
//! weighted by how much of it is still inside the window), and a token bucket
//! (GCRA) for a request-rate limit with burst. Bounded: entries idle past
//! `expire` go, and a full table evicts its longest-idle entries.
//! Sans-IO: the time comes in as microseconds of the caller's monotonic clock.
//! Not for: which requests a rule applies to, or the 429 itself (`config`, `proxy`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Microseconds of a monotonic clock (the caller's).
pub type Micros = u64;

/// Most shards a table is split into (each its own lock).
const MAX_SHARDS: usize = 64;
/// Entries per shard before a table splits into more shards.
const PER_SHARD: usize = 256;

/// A tracked client within one table: its address, or a 128-bit keyed digest
/// of a header's or cookie's value (no value is kept, so every key is the same
/// size), with the table's hash of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Key {
    id: [u64; 2],
    hash: u64,
}

impl Key {
    /// What identifies the client across nodes: an address as its 16 bytes
    /// (IPv4 as IPv4-mapped IPv6), or a header's or cookie's digest (the
    /// same on two nodes only if their tables' digest seeds are).
    pub fn id(&self) -> [u8; 16] {
        ((u128::from(self.id[0]) << 64) | u128::from(self.id[1])).to_be_bytes()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher of a shard's map: a [`Key`] carries its hash already.
#[derive(Default)]
struct Pass(u64);

impl Hasher for Pass {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Two consecutive periods' counts of one kind (requests, errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// In the current period.
    pub curr: u32,
    /// In the period before.
    pub prev: u32,
}

impl Counts {
    /// The count over the sliding window of one period ending at `into`
    /// microseconds into the current period (HAProxy's `freq_ctr`).
    fn over_window(self, into: Micros, period: Micros) -> u64 {
        let left = period.saturating_sub(into);
        u64::from(self.curr) + u64::from(self.prev) * left / period.max(1)
    }
}

/// What a table knows of one client: a small plain value, so that a peer's
/// copy can be sent and folded in ([`Entry::merge`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// Its connections open now (on this node).
    pub conn_cur: u32,
    pub requests: Counts,
    /// Its error answers (status 400 and over).
    pub errors: Counts,
    /// When the current period began (a multiple of the period).
    pub period_start: Micros,
    /// Its last request, connection or close.
    pub last_seen: Micros,
    /// The token bucket, as GCRA's theoretical arrival time: the bucket is
    /// full when this is in the past.
    pub tat: Micros,
}

impl Entry {
    /// Moves the periods on to the one holding `now`.
    fn roll(&mut self, now: Micros, period: Micros) {
        let start = now - now % period.max(1);
        if start <= self.period_start {
            return;
        }
        let next = self.period_start + period;
        for c in [&mut self.requests, &mut self.errors] {
            c.prev = if start == next { c.curr } else { 0 };
            c.curr = 0;
        }
        self.period_start = start;
    }

    /// Its request rate: requests over the last `period` at `now`.
    pub fn request_rate(&self, now: Micros, period: Micros) -> u64 {
        let mut e = *self;
        e.roll(now, period);
        e.requests
            .over_window(now.saturating_sub(e.period_start), period)
    }

    /// Its error rate: error answers over the last `period` at `now`.
    pub fn error_rate(&self, now: Micros, period: Micros) -> u64 {
        let mut e = *self;
        e.roll(now, period);
        e.errors
            .over_window(now.saturating_sub(e.period_start), period)
    }

    /// Folds in another node's entry for the same client (times on the same
    /// clock): the later period's counts, the larger of each where both
    /// count the same period, the later bucket state. Connections stay this
    /// node's own: a peer's clients close on the peer.
    pub fn merge(&mut self, other: &Entry, period: Micros) {
        let mut theirs = *other;
        theirs.conn_cur = 0;
        match theirs.period_start.cmp(&self.period_start) {
            std::cmp::Ordering::Greater => self.roll(theirs.period_start, period),
            std::cmp::Ordering::Less => theirs.roll(self.period_start, period),
            std::cmp::Ordering::Equal => {}
        }
        for (mine, t) in [
            (&mut self.requests, theirs.requests),
            (&mut self.errors, theirs.errors),
        ] {
            mine.curr = mine.curr.max(t.curr);
            mine.prev = mine.prev.max(t.prev);
        }
        self.tat = self.tat.max(theirs.tat);
        self.last_seen = self.last_seen.max(theirs.last_seen);
    }
}

/// A request-rate limit: `requests` per `per` on average, and up to
/// `requests + burst` at once from a full bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time one request takes out of the bucket (GCRA's emission interval).
    interval: Micros,
    /// How far ahead of now the bucket may run (GCRA's tolerance).
    tolerance: Micros,
}

impl Rate {
    /// `requests` ≥ 1 per `per`, plus `burst`.
    pub fn new(requests: u32, per: Duration, burst: u32) -> Rate {
        let per = per.as_micros().min(u128::from(u64::MAX)) as u64;
        let interval = (per / u64::from(requests.max(1))).max(1);
        let depth = u64::from(requests.max(1)) + u64::from(burst) - 1;
        Rate {
            interval,
            tolerance: interval.saturating_mul(depth),
        }
    }

    /// The same bucket as `other` (what rules sharing a table must have):
    /// the same refill, whatever the burst.
    pub fn same_refill(&self, other: &Rate) -> bool {
        self.interval == other.interval
    }
}

/// What a listener's or route's rules hold a request to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    pub rate: Option<Rate>,
    /// Most error answers over the table's period.
    pub errors: Option<u32>,
}

/// Which rule a client is over (the `rule` label of `floatlb_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Rate,
    Connections,
    Errors,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::Rate, Limit::Connections, Limit::Errors];

    pub fn label(self) -> &'static str {
        match self {
            Limit::Rate => "rate-limit",
            Limit::Connections => "max-connections",
            Limit::Errors => "error-limit",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A table's answer for a request or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted, and within every rule.
    Pass,
    /// The table is full of clients with connections open: not counted, let through.
    Untracked,
    /// Over `limit`; it may try again after `retry_after`.
    Limited { limit: Limit, retry_after: Micros },
}

/// Counters of a table, kept with it across reloads.
#[derive(Debug, Default)]
pub struct TableStats {
    /// Refused, by [`Limit::index`].
    pub limited: [AtomicU64; 3],
    /// Requests or connections not tracked: the table was full of entries
    /// that could not go (each with a connection open).
    pub untracked: AtomicU64,
    /// Entries evicted idle before their expiry to make room.
    pub evicted: AtomicU64,
}

struct Shard {
    map: HashMap<Key, Entry, BuildHasherDefault<Pass>>,
    /// When this shard is next swept of expired entries.
    next_sweep: Micros,
}

/// How a header's or cookie's value becomes a key.
enum Digest {
    /// Under seeds of this process's own: no client can aim at a shard.
    Random(RandomState, RandomState),
    /// Under seeds every node of a `[peers]` set derives from its shared
    /// key, so that a value is the same client on each (and still
    /// unguessable to one who lacks the key).
    Shared([u64; 4]),
}

/// A value's 128-bit digest under `seed` (two SipHash-2-4 passes).
#[allow(deprecated)] // std's SipHasher: SipHash-2-4 with chosen keys, no dependency
fn shared_digest(seed: &[u64; 4], value: &[u8]) -> [u64; 2] {
    use std::hash::{Hasher as _, SipHasher};
    let mut a = SipHasher::new_with_keys(seed[0], seed[1]);
    a.write(value);
    let mut b = SipHasher::new_with_keys(seed[2], seed[3]);
    b.write(value);
    [a.finish(), b.finish()]
}

/// One `[[limit]]` table; see the module header.
pub struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// Most entries.
    size: usize,
    /// Entries held now.
    len: AtomicUsize,
    expire: Micros,
    period: Micros,
    /// Random per table: clients cannot choose keys that share a shard or
    /// a probe sequence without knowing them.
    seeds: [u64; 3],
    digest: Digest,
    pub stats: TableStats,
}

impl Table {
    /// A table of at most `size` entries (give or take one per thread
    /// adding one at the same instant), each dropped once idle for `expire`,
    /// with rates over `period`.
    pub fn new(size: usize, expire: Duration, period: Duration) -> Table {
        let shards = (size / PER_SHARD).clamp(1, MAX_SHARDS).next_power_of_two();
        let micros = |d: Duration| d.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
        Table {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::default(),
                        next_sweep: 0,
                    })
                })
                .collect(),
            size: size.max(1),
            len: AtomicUsize::new(0),
            expire: micros(expire),
            period: micros(period),
            seeds: {
                let s = RandomState::new();
                [s.hash_one(1u8), s.hash_one(2u8), s.hash_one(3u8) | 1]
            },
            digest: Digest::Random(RandomState::new(), RandomState::new()),
            stats: TableStats::default(),
        }
    }

    /// Header and cookie values digested under `seed` (from `[peers]`'s
    /// key), the same on every node that has it.
    pub fn with_shared_digest(mut self, seed: [u64; 4]) -> Table {
        self.digest = Digest::Shared(seed);
        self
    }

    /// The shared seed its values are digested under, if any.
    pub fn shared_digest(&self) -> Option<[u64; 4]> {
        match self.digest {
            Digest::Shared(seed) => Some(seed),
            Digest::Random(..) => None,
        }
    }

    /// The period of its rates.
    pub fn period(&self) -> Micros {
        self.period
    }

    /// The key of a client address (an IPv4 address and its IPv4-mapped
    /// IPv6 form are one client).
    pub fn address(&self, ip: IpAddr) -> Key {
        let bits = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped().to_bits(),
            IpAddr::V6(a) => a.to_bits(),
        };
        self.key([(bits >> 64) as u64, bits as u64])
    }

    /// The key of a header's or cookie's value.
    pub fn text(&self, value: &[u8]) -> Key {
        match &self.digest {
            Digest::Random(a, b) => self.key([a.hash_one(value), b.hash_one(value)]),
            Digest::Shared(seed) => self.key(shared_digest(seed, value)),
        }
    }

    fn key(&self, id: [u64; 2]) -> Key {
        Key {
            id,
            hash: fold(
                fold(id[0] ^ self.seeds[0], id[1] ^ self.seeds[1]),
                self.seeds[2],
            ),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        // The top bits: the map inside uses the low ones.
        let i = (key.hash >> 58) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }

    fn lock(&self, key: &Key) -> std::sync::MutexGuard<'_, Shard> {
        // A panic while a shard was held leaves plain counters: usable.
        self.shard(key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request from `key` at `now`: counted in its request rate, then held
    /// to `rules` (the error limit first, then the rate, whose bucket a
    /// refused request does not draw from).
    pub fn request(&self, key: Key, now: Micros, rules: &Rules) -> Verdict {
        let mut shard = self.lock(&key);
        let Some(e) = self.entry(&mut shard, key, now) else {
            self.stats.untracked.fetch_add(1, Ordering::Relaxed);
            return Verdict::Untracked;
        };
        e.requests.curr = e.requests.curr.saturating_add(1);
        let verdict = check(e, now, self.period, rules);
        drop(shard);
        if let Verdict::Limited { limit, .. } = verdict {
            self.stats.limited[limit.index()].fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// A connection from `key` at `now`, refused when it already has `max`
    /// open (0: no limit). `Pass` and `Untracked` come with the table's
    /// count raised: call [`Table::close`] when the connection ends, only then.
    pub fn connect(&self, key: Key, now: Micros, max: u32) -> Verdict {
        let mut shard = self.lock(&key);
        let Some(e) = self.entry(&mut shard, key, now) else {
            self.stats.untracked.fetch_add(1, Ordering::Relaxed);
            return Verdict::Untracked;
        };
        if max > 0 && e.conn_cur >= max {
            drop(shard);
            self.stats.limited[Limit::Connections.index()].fetch_add(1, Ordering::Relaxed);
            return Verdict::Limited {
                limit: Limit::Connections,
                retry_after: 1_000_000,
            };
        }
        e.conn_cur += 1;
        Verdict::Pass
    }

    /// A connection [`Table::connect`] passed has ended.
    pub fn close(&self, key: Key, now: Micros) {
        let mut shard = self.lock(&key);
        if let Some(e) = shard.map.get_mut(&key) {
            e.conn_cur = e.conn_cur.saturating_sub(1);
            e.last_seen = e.last_seen.max(now);
        }
    }

    /// `key`'s request was answered with an error (status 400 and over).
    pub fn error(&self, key: Key, now: Micros) {
        let mut shard = self.lock(&key);
        if let Some(e) = shard.map.get_mut(&key) {
            e.roll(now, self.period);
            e.errors.curr = e.errors.curr.saturating_add(1);
        }
    }

    /// What the table holds for `key` now.
    pub fn get(&self, key: Key) -> Option<Entry> {
        self.lock(&key).map.get(&key).copied()
    }

    /// The key whose [`Key::id`] is `id` (one a peer sent).
    pub fn key_of(&self, id: [u8; 16]) -> Key {
        let bits = u128::from_be_bytes(id);
        self.key([(bits >> 64) as u64, bits as u64])
    }

    /// Folds a peer's entry for `key` in ([`Entry::merge`]), making the entry
    /// if new (as a request would; not when the table is full of open
    /// connections). `theirs` is on this table's clock.
    pub fn merge(&self, key: Key, theirs: &Entry, now: Micros) {
        let mut shard = self.lock(&key);
        if let Some(e) = self.entry(&mut shard, key, now) {
            e.merge(theirs, self.period);
        }
    }

    /// Calls `f` with each entry, shard by shard (each shard locked while it
    /// is read): what a peer is sent.
    pub fn each(&self, mut f: impl FnMut(Key, &Entry)) {
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (k, e) in &s.map {
                f(*k, e);
            }
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most entries it holds.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes its maps hold now: each bucket a key, an entry and a control byte.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock().map_or(0, |s| match s.map.capacity() {
                    0 => 0,
                    c => (c * 8 / 7).next_power_of_two() * BUCKET_BYTES,
                })
            })
            .sum()
    }

    /// `key`'s entry at `now`, made if new (after making room); None when the
    /// shard is full of entries with connections open.
    fn entry<'s>(&self, shard: &'s mut Shard, key: Key, now: Micros) -> Option<&'s mut Entry> {
        if now >= shard.next_sweep {
            // At most every quarter of `expire`: each shard's cost is spread out.
            shard.next_sweep = now + (self.expire / 4).max(1_000_000);
            self.sweep(shard, now);
        }
        if !shard.map.contains_key(&key) {
            if self.len() >= self.size {
                let gone = self.make_room(shard, now);
                self.stats.evicted.fetch_add(gone, Ordering::Relaxed);
                if self.len() >= self.size {
                    return None;
                }
            }
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        let e = shard.map.entry(key).or_default();
        if idle(e, now, self.expire) {
            *e = Entry::default();
        }
        e.roll(now, self.period);
        e.last_seen = e.last_seen.max(now);
        Some(e)
    }

    /// Drops a shard's expired entries.
    fn sweep(&self, shard: &mut Shard, now: Micros) {
        let (expire, before) = (self.expire, shard.map.len());
        shard.map.retain(|_, e| !idle(e, now, expire));
        self.len
            .fetch_sub(before - shard.map.len(), Ordering::Relaxed);
    }

    /// Frees room in a full table, in this shard: its expired entries, else
    /// the longest-idle eighth of those without a connection open. Returns
    /// how many were evicted before their expiry.
    fn make_room(&self, shard: &mut Shard, now: Micros) -> u64 {
        self.sweep(shard, now);
        if self.len() < self.size {
            return 0;
        }
        let mut seen: Vec<Micros> = shard
            .map
            .values()
            .filter(|e| e.conn_cur == 0)
            .map(|e| e.last_seen)
            .collect();
        if seen.is_empty() {
            return 0;
        }
        let nth = (seen.len() / 8).min(seen.len() - 1);
        let (_, &mut cutoff, _) = seen.select_nth_unstable(nth);
        let before = shard.map.len();
        shard
            .map
            .retain(|_, e| e.conn_cur > 0 || e.last_seen > cutoff);
        let gone = before - shard.map.len();
        self.len.fetch_sub(gone, Ordering::Relaxed);
        gone as u64
    }
}

/// The folded multiply of foldhash and ahash's fallback: keyed with random
/// seeds, a few instructions where SipHash takes a couple of hundred (this
/// runs once per request that a rule counts).
fn fold(a: u64, b: u64) -> u64 {
    // Exact: distinct `b` give distinct products for any `a` but 0.
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Bytes per bucket of a shard's map: key, entry, hashbrown's control byte.
pub const BUCKET_BYTES: usize = std::mem::size_of::<(Key, Entry)>() + 1;

/// Whether an entry may go: no connection open, and nothing for `expire`.
fn idle(e: &Entry, now: Micros, expire: Micros) -> bool {
    e.conn_cur == 0 && now.saturating_sub(e.last_seen) > expire
}

/// `rules` for an entry whose request is counted: the error limit over the
/// sliding period, then the bucket.
fn check(e: &mut Entry, now: Micros, period: Micros, rules: &Rules) -> Verdict {
    if let Some(max) = rules.errors {
        let into = now.saturating_sub(e.period_start);
        if e.errors.over_window(into, period) > u64::from(max) {
            // Under the limit by the next period's start at the latest when
            // this period's errors alone are not over it.
            return Verdict::Limited {
                limit: Limit::Errors,
                retry_after: period.saturating_sub(into),
            };
        }
    }
    if let Some(rate) = rules.rate {
        let tat = e.tat.max(now);
        let ahead = tat - now;
        if ahead > rate.tolerance {
            return Verdict::Limited {
                limit: Limit::Rate,
                retry_after: ahead - rate.tolerance,
            };
        }
        e.tat = tat + rate.interval;
    }
    Verdict::Pass
}

/// `Retry-After` in whole seconds (RFC 9110 §10.2.3), at least 1.
pub fn retry_after_secs(after: Micros) -> u64 {
    after.div_ceil(1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Micros = 1_000_000;
    const MS: Micros = 1_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    fn table(size: usize) -> Table {
        Table::new(size, Duration::from_secs(60), Duration::from_secs(10))
    }

    fn rate(requests: u32, per: u64, burst: u32) -> Rules {
        Rules {
            rate: Some(Rate::new(requests, Duration::from_secs(per), burst)),
            errors: None,
        }
    }

    fn passed(t: &Table, k: Key, now: Micros, r: &Rules, n: usize) -> usize {
        (0..n)
            .filter(|_| t.request(k, now, r) == Verdict::Pass)
            .count()
    }

    #[test]
    fn a_shared_seed_makes_a_value_the_same_client_on_two_tables() {
        let t = || Table::new(100, Duration::from_secs(60), Duration::from_secs(10));
        let seed = [1, 2, 3, 4];
        let (a, b) = (t().with_shared_digest(seed), t().with_shared_digest(seed));
        assert_eq!(a.text(b"k1").id(), b.text(b"k1").id());
        assert_ne!(a.text(b"k1").id(), a.text(b"k2").id());
        // Without it, each table digests under seeds of its own.
        assert_ne!(t().text(b"k1").id(), t().text(b"k1").id());
        let other = t().with_shared_digest([1, 2, 3, 5]);
        assert_ne!(other.text(b"k1").id(), a.text(b"k1").id());
    }

    #[test]
    fn a_full_bucket_lets_requests_plus_burst_through_at_once_then_the_rate() {
        let t = table(100);
        let k = t.address(ip("198.18.0.7"));
        let r = rate(10, 1, 5);
        let start = 100 * S;
        assert_eq!(passed(&t, k, start, &r, 100), 15);
        // One request back each 100 ms, never two.
        assert_eq!(passed(&t, k, start + 99 * MS, &r, 10), 0);
        assert_eq!(passed(&t, k, start + 100 * MS, &r, 10), 1);
        assert_eq!(passed(&t, k, start + 350 * MS, &r, 10), 2);
        // A refusal says when the next token comes.
        match t.request(k, start + 350 * MS, &r) {
            Verdict::Limited {
                limit: Limit::Rate,
                retry_after,
            } => assert_eq!(retry_after, 50 * MS),
            v => panic!("{v:?}"),
        }
        assert_eq!(retry_after_secs(50 * MS), 1);
        assert_eq!(retry_after_secs(2 * S + 1), 3);
        // Idle for as long as the bucket takes to fill: full again.
        assert_eq!(passed(&t, k, start + 10 * S, &r, 100), 15);
        assert_eq!(
            t.stats.limited[Limit::Rate.index()].load(Ordering::Relaxed),
            85 + 10 + 9 + 8 + 1 + 85
        );
    }

    #[test]
    fn without_burst_a_rate_allows_its_requests_at_once() {
        // HAProxy's `http_req_rate(10s) gt 100`: 100 in a burst, then wait.
        let t = table(100);
        let k = t.address(ip("::1"));
        let r = rate(100, 10, 0);
        assert_eq!(passed(&t, k, 5 * S, &r, 300), 100);
        assert_eq!(passed(&t, k, 5 * S + 5 * S, &r, 300), 50);
    }

    #[test]
    fn clients_are_counted_apart_and_ipv4_mapped_is_the_same_client() {
        let t = table(100);
        let r = rate(2, 1, 0);
        let a = t.address(ip("127.0.0.1"));
        let b = t.address(ip("127.0.0.2"));
        assert_eq!(passed(&t, a, S, &r, 5), 2);
        assert_eq!(passed(&t, b, S, &r, 5), 2);
        assert_eq!(t.address(ip("::ffff:127.0.0.1")), a);
        let h = t.text(b"key-1");
        assert_eq!(h, t.text(b"key-1"));
        assert_ne!(h, t.text(b"key-2"));
        assert_eq!(passed(&t, h, S, &r, 5), 2);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn the_window_slides_as_haproxy_freq_ctr_does() {
        let t = table(100);
        let k = t.address(ip("198.18.0.1"));
        let none = Rules::default();
        let p = t.period();
        // 40 requests in the period [10 s, 20 s).
        assert_eq!(passed(&t, k, 12 * S, &none, 40), 40);
        let e = t.get(k).unwrap();
        assert_eq!(e.period_start, 10 * S);
        assert_eq!(e.request_rate(15 * S, p), 40);
        // A quarter into the next period, three quarters of the last one count.
        assert_eq!(e.request_rate(22_500 * MS, p), 30);
        assert_eq!(passed(&t, k, 22_500 * MS, &none, 4), 4);
        assert_eq!(t.get(k).unwrap().request_rate(22_500 * MS, p), 34);
        // Two periods on, nothing is left.
        assert_eq!(t.get(k).unwrap().request_rate(40 * S, p), 0);
    }

    #[test]
    fn an_error_limit_refuses_until_the_errors_slide_out() {
        let t = table(100);
        let k = t.address(ip("198.18.0.1"));
        let r = Rules {
            rate: None,
            errors: Some(3),
        };
        assert_eq!(t.request(k, 11 * S, &r), Verdict::Pass);
        for _ in 0..4 {
            t.error(k, 11 * S);
        }
        assert_eq!(
            t.request(k, 12 * S, &r),
            Verdict::Limited {
                limit: Limit::Errors,
                retry_after: 8 * S
            }
        );
        // Next period: 4 × 0.5 = 2 errors in the window.
        assert_eq!(t.request(k, 25 * S, &r), Verdict::Pass);
        assert_eq!(t.get(k).unwrap().error_rate(25 * S, t.period()), 2);
    }

    #[test]
    fn connections_are_held_to_their_maximum_and_given_back() {
        let t = table(100);
        let k = t.address(ip("198.18.0.9"));
        for _ in 0..3 {
            assert_eq!(t.connect(k, S, 3), Verdict::Pass);
        }
        assert!(matches!(
            t.connect(k, S, 3),
            Verdict::Limited {
                limit: Limit::Connections,
                ..
            }
        ));
        t.close(k, 2 * S);
        assert_eq!(t.connect(k, 2 * S, 3), Verdict::Pass);
        assert_eq!(t.get(k).unwrap().conn_cur, 3);
        // An entry with connections open outlives its expiry.
        assert_eq!(
            t.request(t.address(ip("::2")), 500 * S, &Rules::default()),
            Verdict::Pass
        );
        assert_eq!(t.get(k).unwrap().conn_cur, 3);
    }

    #[test]
    fn idle_entries_expire() {
        let t = Table::new(100, Duration::from_secs(30), Duration::from_secs(10));
        let r = rate(1, 60, 0);
        let a = t.address(ip("198.18.0.1"));
        assert_eq!(passed(&t, a, S, &r, 3), 1);
        // Still remembered (and limited) within `expire`...
        assert_eq!(passed(&t, a, 30 * S, &r, 1), 0);
        // ...forgotten past it: a fresh bucket.
        assert_eq!(passed(&t, a, 61 * S, &r, 1), 1);
        // The sweep drops it without its being asked for.
        let b = t.address(ip("198.18.0.2"));
        assert_eq!(passed(&t, b, 200 * S, &r, 1), 1);
        assert_eq!(t.len(), 1);
        assert!(t.get(a).is_none());
    }

    #[test]
    fn a_full_table_evicts_its_longest_idle_and_never_grows() {
        let t = table(16);
        assert_eq!(t.size(), 16);
        let none = Rules::default();
        for i in 0..16u32 {
            let k = t.address(v4(0xC612_0000u32 + i));
            assert_eq!(t.request(k, S + u64::from(i) * MS, &none), Verdict::Pass);
        }
        assert_eq!(t.len(), 16);
        let newcomer = t.address(ip("203.0.113.1"));
        assert_eq!(t.request(newcomer, 2 * S, &none), Verdict::Pass);
        assert!(t.len() <= 16);
        // The first one seen went; the last one seen stayed.
        assert!(t.get(t.address(v4(0xC612_0000u32))).is_none());
        assert!(t.get(t.address(v4(0xC612_000Fu32))).is_some());
        assert!(t.stats.evicted.load(Ordering::Relaxed) >= 1);
        // Many new clients: still bounded.
        for i in 0..10_000u32 {
            let k = t.address(v4(0x0A00_0000u32 + i));
            t.request(k, 3 * S + u64::from(i), &none);
        }
        assert!(t.len() <= 16, "{}", t.len());
    }

    #[test]
    fn a_table_full_of_open_connections_lets_newcomers_through_untracked() {
        let t = table(4);
        for i in 0..4u32 {
            let k = t.address(v4(0x7F00_0001u32 + i));
            assert_eq!(t.connect(k, S, 10), Verdict::Pass);
        }
        let k = t.address(ip("203.0.113.1"));
        assert_eq!(t.request(k, 2 * S, &rate(1, 1, 0)), Verdict::Untracked);
        assert_eq!(t.connect(k, 2 * S, 1), Verdict::Untracked);
        assert_eq!(t.stats.untracked.load(Ordering::Relaxed), 2);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn memory_per_tracked_key() {
        // Stated in docs/configuration.md ([[limit]]): 24 bytes of key and
        // 48 of entry per bucket, plus the map's control byte.
        assert_eq!(std::mem::size_of::<Key>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 48);
        assert_eq!(BUCKET_BYTES, 73);
        let t = Table::new(100_000, Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(t.size(), 100_000);
        let none = Rules::default();
        for i in 0..100_000u32 {
            t.request(t.address(v4(i)), S, &none);
        }
        assert_eq!(t.len(), 100_000);
        let per_key = t.bytes() / t.len();
        // Buckets come in powers of two, at most 7/8 full.
        assert!((83..=170).contains(&per_key), "{per_key} bytes per key");
    }

    #[test]
    fn neighbouring_addresses_spread_over_the_shards() {
        let t = Table::new(
            64 * PER_SHARD,
            Duration::from_secs(60),
            Duration::from_secs(10),
        );
        assert_eq!(t.shards.len(), 64);
        let v6 = |i: u32| {
            IpAddr::V6(std::net::Ipv6Addr::from_bits(
                0x2001_0002 << 96 | u128::from(i),
            ))
        };
        for addr in [v4, v6] {
            let mut per = [0u32; 64];
            for i in 0..64_000u32 {
                let k = t.address(addr(0xC612_0000 + i));
                per[(k.hash >> 58) as usize] += 1;
            }
            // 1000 each on average.
            assert!(per.iter().all(|&n| (850..1150).contains(&n)), "{per:?}");
        }
    }

    #[test]
    fn a_peers_entry_folds_in() {
        let p = 10 * S;
        let mut mine = Entry {
            conn_cur: 2,
            requests: Counts { curr: 5, prev: 9 },
            errors: Counts { curr: 1, prev: 0 },
            period_start: 10 * S,
            last_seen: 15 * S,
            tat: 16 * S,
        };
        let theirs = Entry {
            conn_cur: 7,
            requests: Counts { curr: 3, prev: 0 },
            errors: Counts::default(),
            period_start: 20 * S,
            last_seen: 21 * S,
            tat: 25 * S,
        };
        mine.merge(&theirs, p);
        assert_eq!(mine.period_start, 20 * S);
        assert_eq!(mine.requests, Counts { curr: 3, prev: 5 });
        assert_eq!(mine.errors, Counts { curr: 0, prev: 1 });
        assert_eq!(
            (mine.conn_cur, mine.tat, mine.last_seen),
            (2, 25 * S, 21 * S)
        );
        // Merging is idempotent.
        let again = mine;
        mine.merge(&theirs, p);
        assert_eq!(mine, again);
    }

    #[test]
    fn a_peers_client_over_its_rate_is_over_it_here() {
        // Node A limits a client; its entries, sent by id, put node B's
        // copy of the client over the same limit.
        let (a, b) = (table(100), table(100));
        let r = rate(5, 60, 0);
        let ka = a.address(ip("198.18.0.7"));
        assert_eq!(passed(&a, ka, 10 * S, &r, 10), 5);
        let mut sent = Vec::new();
        a.each(|k, e| sent.push((k.id(), *e)));
        assert_eq!(sent.len(), 1);
        let mapped = std::net::Ipv4Addr::new(198, 18, 0, 7).to_ipv6_mapped();
        assert_eq!(sent[0].0, mapped.octets());
        for (id, e) in &sent {
            b.merge(b.key_of(*id), e, 10 * S);
        }
        let kb = b.address(ip("198.18.0.7"));
        assert_eq!(b.key_of(sent[0].0), kb);
        assert_eq!(passed(&b, kb, 10 * S, &r, 3), 0);
        assert_eq!(b.get(kb).unwrap().requests.curr, 13);
        assert_eq!(passed(&b, b.address(ip("198.18.0.8")), 10 * S, &r, 3), 3);
    }
}
