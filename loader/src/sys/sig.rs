//! Signals that stop an extraction: while [`Catch`] lives, SIGINT, SIGTERM, SIGHUP and SIGQUIT
//! only record their number (async-signal-safe: one atomic store), so the extractor can stop
//! between entries and remove what it wrote; [`die_of`] then ends the process as the signal would
//! have.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

/// The signals a user sends to stop a program: ^C, kill, a closed terminal, ^\.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// The last stop signal received while a [`Catch`] was installed, 0 if none.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    PENDING.store(sig, Ordering::Relaxed);
}

/// The signal that asked us to stop, if any arrived.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Installed handlers; dropping the last one restores the dispositions found before.
pub struct Catch(());

/// Nesting depth of [`Catch`]es (threads in tests) and the dispositions the first one replaced.
static INSTALLED: Mutex<(usize, Vec<(i32, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

/// Makes the [`STOP_SIGNALS`] set the pending flag instead of killing the process.
pub fn catch() -> io::Result<Catch> {
    let mut g = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if g.0 == 0 {
        PENDING.store(0, Ordering::Relaxed);
        for sig in STOP_SIGNALS {
            // SAFETY: sigaction is plain old data; all-zero (no flags, empty mask) is valid.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // Restart syscalls: the flag is polled, so nothing needs EINTR to notice it.
            act.sa_flags = libc::SA_RESTART;
            // SAFETY: as above; overwritten by the kernel.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers point to valid sigaction structs; `record` only does an
            // atomic store, which is async-signal-safe.
            if unsafe { libc::sigaction(sig, &act, &mut old) } == -1 {
                let e = io::Error::last_os_error();
                restore(&mut g.1);
                return Err(e);
            }
            g.1.push((sig, old));
        }
    }
    g.0 += 1;
    Ok(Catch(()))
}

fn restore(old: &mut Vec<(i32, libc::sigaction)>) {
    for (sig, act) in old.drain(..) {
        // SAFETY: `act` is the disposition the kernel returned for `sig`.
        unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) };
    }
}

impl Drop for Catch {
    fn drop(&mut self) {
        let mut g = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            restore(&mut g.1);
        }
    }
}

/// Ends the process the way `sig` ends it by default, so a shell sees death by that signal;
/// exits 128+sig if the signal does not kill (e.g. it is blocked or ignored for good).
pub fn die_of(sig: i32) -> ! {
    // SAFETY: installs the default disposition; no handler of ours is involved.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset/sigaddset initialise the set; sigprocmask reads it and writes nothing
    // back (null old set); raise takes a plain integer.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// Sends `sig` to this process (tests).
pub fn raise(sig: i32) -> io::Result<()> {
    // SAFETY: raise takes a plain integer.
    if unsafe { libc::raise(sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
