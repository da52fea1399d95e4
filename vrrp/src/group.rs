//! Sync groups: instances that fail over together (keepalived's
//! `vrrp_sync_group`), typically the IPv4 and the IPv6 instance of one
//! service, so clients of both families land on the same node.
//!
//! Each member publishes two facts here; the others look at them on every
//! turn of their loop (at most `TRACK_POLL` apart) and follow:
//! - its own fault (its interface lost its link): the others enter FAULT too,
//!   and leave it when no member has a fault of its own any more;
//! - that it gave up MASTER to a higher-priority router: the others that are
//!   master step down, so both families move to the same node;
//! - the state it is in, so the member whose transition puts the whole group
//!   in one state sends keepalived's `GROUP` notification, once.
//!
//! Not for: the protocol (the state machine knows nothing of groups; the
//! instance feeds it the same inputs a link change or a step-down gives).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::fsm::State;

struct Slot {
    own_fault: AtomicBool,
    /// The member's state (`state_code`), or NO_STATE before its first.
    state: AtomicU8,
}

const NO_STATE: u8 = u8::MAX;

fn state_code(s: State) -> u8 {
    match s {
        State::Initialize => 0,
        State::Backup => 1,
        State::Master => 2,
        State::Fault => 3,
    }
}

#[derive(Default)]
struct Shared {
    name: String,
    slots: Mutex<Vec<Arc<Slot>>>,
    /// Bumped each time a member yields MASTER to another router.
    yields: AtomicU64,
    /// The state the whole group was last seen in together.
    group_state: Mutex<Option<u8>>,
}

/// A named sync group; clone it into every member's config.
#[derive(Clone, Default)]
pub struct SyncGroup {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SyncGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncGroup({:?})", self.shared.name)
    }
}

impl SyncGroup {
    pub fn new(name: &str) -> Self {
        SyncGroup {
            shared: Arc::new(Shared {
                name: name.into(),
                ..Shared::default()
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A member's handle; one per instance.
    pub fn join(&self) -> Member {
        let slot = Arc::new(Slot {
            own_fault: AtomicBool::new(false),
            state: AtomicU8::new(NO_STATE),
        });
        self.shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone());
        Member {
            group: self.clone(),
            slot,
            seen_yields: self.shared.yields.load(Ordering::Acquire),
        }
    }
}

/// One instance's place in its group.
pub struct Member {
    group: SyncGroup,
    slot: Arc<Slot>,
    seen_yields: u64,
}

impl Member {
    pub fn group_name(&self) -> &str {
        self.group.name()
    }

    /// Publishes whether this member has a fault of its own.
    pub fn set_own_fault(&self, fault: bool) {
        self.slot.own_fault.store(fault, Ordering::Release);
    }

    /// Whether another member has a fault of its own.
    pub fn others_faulted(&self) -> bool {
        self.group
            .shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| !Arc::ptr_eq(s, &self.slot) && s.own_fault.load(Ordering::Acquire))
    }

    /// Records that this member entered `state`; true when that puts every
    /// member of the group in `state` and the group was not already there
    /// (the caller then sends the group's notification).
    pub fn entered(&self, state: State) -> bool {
        let code = state_code(state);
        self.slot.state.store(code, Ordering::Release);
        let slots = self
            .group
            .shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let all = slots
            .iter()
            .all(|s| s.state.load(Ordering::Acquire) == code);
        let mut group = self
            .group
            .shared
            .group_state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if all && *group != Some(code) {
            *group = Some(code);
            return true;
        }
        false
    }

    /// Tells the others that this member gave MASTER up to another router.
    pub fn yielded(&mut self) {
        self.seen_yields = self.group.shared.yields.fetch_add(1, Ordering::AcqRel) + 1;
    }

    /// Whether another member yielded since the last call.
    pub fn take_others_yielded(&mut self) -> bool {
        let now = self.group.shared.yields.load(Ordering::Acquire);
        let changed = now != self.seen_yields;
        self.seen_yields = now;
        changed
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.set_own_fault(false);
        self.group
            .shared
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &self.slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_seen_by_the_others_only_and_cleared_on_leave() {
        let g = SyncGroup::new("web");
        let a = g.join();
        let b = g.join();
        a.set_own_fault(true);
        assert!(b.others_faulted());
        assert!(!a.others_faulted(), "a member does not follow itself");
        drop(a);
        assert!(!b.others_faulted(), "a member that left no longer counts");
    }

    #[test]
    fn a_yield_is_seen_once_by_each_other_member() {
        let g = SyncGroup::new("web");
        let mut a = g.join();
        let mut b = g.join();
        let mut c = g.join();
        a.yielded();
        assert!(!a.take_others_yielded());
        assert!(b.take_others_yielded());
        assert!(!b.take_others_yielded());
        assert!(c.take_others_yielded());
    }

    /// keepalived's GROUP notification fires once, from the member whose
    /// transition puts the whole group in one state.
    #[test]
    fn the_group_state_is_announced_once_when_all_agree() {
        let g = SyncGroup::new("web");
        let a = g.join();
        let b = g.join();
        assert!(!a.entered(State::Backup), "b has no state yet");
        assert!(b.entered(State::Backup));
        assert!(!a.entered(State::Master));
        assert!(b.entered(State::Master));
        assert!(!b.entered(State::Master), "already announced");
    }
}
