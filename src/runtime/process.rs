//! The calls floatlb makes on processes, in one place, each with its safety
//! argument: a signal to a worker, the process's name, dying with the
//! supervisor (between fork and exec), the open-files limit, and giving free
//! heap memory back to the kernel.

/// Sends `sig` to `pid`, a child the supervisor started and has not reaped.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: a plain signal; the pid is a child not yet reaped, so not reused.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Sets `comm` as `ps` and /proc show it, so a worker can be told from its supervisor.
pub fn set_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Between fork and exec (async-signal-safe calls only): the child gets
/// SIGKILL when its parent `parent` dies, and fails if it already has.
pub fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe and take no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The parent died between fork and prctl: nothing to serve for.
    if unsafe { libc::getppid() } != parent {
        return Err(std::io::Error::other("the supervisor is gone"));
    }
    Ok(())
}

/// Between fork and exec: `fd` stays open across exec (close-on-exec cleared).
pub fn keep_across_exec(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl is async-signal-safe; a bad descriptor is an error, not UB.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The soft limit on open files.
pub fn open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Gives the free memory of glibc's arenas back to the kernel; whether any was.
#[cfg(all(not(feature = "jemalloc"), target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() -> bool {
    // SAFETY: a plain glibc call; 0 = keep no extra padding at the heap top.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_limit_is_read() {
        assert!(open_files_limit().is_some_and(|n| n >= 3));
    }

    #[test]
    fn a_descriptor_kept_across_exec_loses_close_on_exec() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&l);
        // SAFETY: reading the flags of a descriptor this test owns.
        let cloexec = || unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC;
        assert_ne!(cloexec(), 0, "std opens sockets close-on-exec");
        keep_across_exec(fd).unwrap();
        assert_eq!(cloexec(), 0);
        assert!(keep_across_exec(-1).is_err());
    }
}
