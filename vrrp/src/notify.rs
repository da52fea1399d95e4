//! Notify commands: run user commands on each state transition without
//! blocking the VRRP thread.
//!
//! Two conventions. floatlb's own `notify` is called as `command <instance>
//! <STATE>`. keepalived's hooks ([`NotifyCommands`]) are called as keepalived
//! calls them (keepalived/vrrp/vrrp_notify.c): `notify_master`,
//! `notify_backup`, `notify_fault`, `notify_stop` with their own arguments
//! only, on entering that state; then `notify` with four more arguments,
//! `INSTANCE|GROUP <name> <STATE> <priority>` (priority 0 for a group).
//! Commands run without a shell. Not for: deciding when (the instance).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::fsm::State;

/// keepalived's notify hooks of one instance; each is a program and its
/// arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyCommands {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    /// keepalived's `notify`: called after the one above with `INSTANCE
    /// <name> <STATE> <priority>`, and with `GROUP <group> <STATE> 0` when
    /// this instance's transition puts its whole sync group in one state.
    pub keepalived: Option<Vec<String>>,
}

impl NotifyCommands {
    fn for_state(&self, state: State) -> Option<&Vec<String>> {
        match state {
            State::Master => self.master.as_ref(),
            State::Backup => self.backup.as_ref(),
            State::Fault => self.fault.as_ref(),
            State::Initialize => self.stop.as_ref(),
        }
    }
}

/// Spawns the notify commands and reaps finished children.
pub struct Notifier {
    command: Option<PathBuf>,
    hooks: NotifyCommands,
    running: Vec<Child>,
}

impl Notifier {
    pub fn new(command: Option<PathBuf>, hooks: NotifyCommands) -> Self {
        Notifier {
            command,
            hooks,
            running: Vec::new(),
        }
    }

    /// New commands for later transitions; running ones are still reaped.
    pub fn set_commands(&mut self, command: Option<PathBuf>, hooks: NotifyCommands) {
        self.command = command;
        self.hooks = hooks;
    }

    /// The commands for `instance` entering `state` at `priority`: the
    /// keepalived hook of that state, keepalived's `notify`, then floatlb's
    /// own `notify`.
    pub fn notify(&mut self, instance: &str, state: State, priority: u8) {
        self.reap();
        if let Some(argv) = self.hooks.for_state(state).cloned() {
            self.spawn(&argv, &[]);
        }
        if let Some(argv) = self.hooks.keepalived.clone() {
            let prio = priority.to_string();
            self.spawn(&argv, &["INSTANCE", instance, state.as_str(), &prio]);
        }
        if let Some(cmd) = self.command.clone() {
            let cmd = cmd.to_string_lossy().into_owned();
            self.spawn(&[cmd], &[instance, state.as_str()]);
        }
    }

    /// keepalived's group notification: `notify GROUP <group> <STATE> 0`.
    pub fn notify_group(&mut self, group: &str, state: State) {
        if let Some(argv) = self.hooks.keepalived.clone() {
            self.spawn(&argv, &["GROUP", group, state.as_str(), "0"]);
        }
    }

    fn spawn(&mut self, argv: &[String], extra: &[&str]) {
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        match Command::new(program)
            .args(args)
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => self.running.push(child),
            Err(e) => {
                tracing::warn!(command = %program, error = %e, "notify command failed to start")
            }
        }
    }

    /// Collects exited children so none linger as zombies.
    pub fn reap(&mut self) {
        self.running
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_command_with_instance_and_state() {
        let dir = std::env::temp_dir().join(format!("vrrp-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = dir.join("notify.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", out.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut n = Notifier::new(Some(script), NotifyCommands::default());
        n.notify("vi51", State::Master, 100);
        for c in n.running.iter_mut() {
            c.wait().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "vi51 MASTER\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// keepalived's calling convention (vrrp_notify.c: "script
    /// {GROUP|INSTANCE} NAME {MASTER|BACKUP|FAULT|STOP|DELETED} PRIO", the
    /// prio zero for a group): the state hook runs with its own arguments,
    /// then `notify` with the four more.
    #[test]
    fn keepalived_convention() {
        let dir = std::env::temp_dir().join(format!("vrrp-notify-k-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = dir.join("argv.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$*\" >> {}\n", out.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let argv = |extra: &str| Some(vec![script.display().to_string(), extra.to_string()]);
        let hooks = NotifyCommands {
            master: argv("to-master"),
            stop: argv("to-stop"),
            keepalived: argv("k"),
            ..NotifyCommands::default()
        };
        let mut n = Notifier::new(None, hooks);
        let wait = |n: &mut Notifier| {
            for c in n.running.iter_mut() {
                c.wait().unwrap();
            }
        };
        n.notify("VI_1", State::Master, 150);
        wait(&mut n);
        n.notify("VI_1", State::Backup, 90);
        wait(&mut n);
        n.notify_group("web", State::Backup);
        wait(&mut n);
        n.notify("VI_1", State::Initialize, 90);
        wait(&mut n);
        // The hook and `notify` run side by side (as in keepalived): compare as a set.
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "k GROUP web BACKUP 0",
                "k INSTANCE VI_1 BACKUP 90",
                "k INSTANCE VI_1 MASTER 150",
                "k INSTANCE VI_1 STOP 90",
                "to-master",
                "to-stop"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
