//! Notify commands: run a user command on each state transition, as
//! keepalived's `notify` does, without blocking the VRRP thread.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::fsm::State;

/// Spawns `command <instance> <STATE>` and reaps finished children.
pub struct Notifier {
    command: Option<PathBuf>,
    running: Vec<Child>,
}

impl Notifier {
    pub fn new(command: Option<PathBuf>) -> Self {
        Notifier {
            command,
            running: Vec::new(),
        }
    }

    /// A new command for later transitions; running ones are still reaped.
    pub fn set_command(&mut self, command: Option<PathBuf>) {
        self.command = command;
    }

    pub fn notify(&mut self, instance: &str, state: State) {
        self.reap();
        let Some(cmd) = &self.command else { return };
        match Command::new(cmd)
            .arg(instance)
            .arg(state.as_str())
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => self.running.push(child),
            Err(e) => {
                tracing::warn!(command = %cmd.display(), error = %e, "notify command failed to start")
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
        let mut n = Notifier::new(Some(script));
        n.notify("vi51", State::Master);
        for c in n.running.iter_mut() {
            c.wait().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "vi51 MASTER\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
