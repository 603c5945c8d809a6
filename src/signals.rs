//! Exit statuses of signals, and Ctrl-C and SIGTERM during a build (SPEC §1, §8): the handler removes the temporary output
//! file and every container created so far, then ends the process with 130 (SIGINT) or 143
//! (SIGTERM) — even when the writing thread is blocked on an output nobody reads, since the
//! process ends with `_exit` without flushing or joining anything.
//!
//! Removing the containers breaks their export streams, so the building thread may fail at
//! the same moment; [`wait_if_interrupted`] lets the command line wait for the handler instead
//! of reporting that consequential error with the wrong exit status.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use std::sync::Arc;

use crate::output;
use crate::source::ImageSource;

/// Exit status for Ctrl-C.
pub const EXIT_SIGINT: u8 = 130;
/// Exit status for SIGTERM.
pub const EXIT_SIGTERM: u8 = 143;

/// The exit status being handled (0: none).
static INTERRUPTED: AtomicU8 = AtomicU8::new(0);

/// How long the handler may spend removing containers before it exits anyway.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// The exit status of the signal being handled, if any.
pub fn interrupted() -> Option<u8> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        c => Some(c),
    }
}

/// Installs the handler on `rt`. The signals are registered before this returns, so a
/// signal arriving any time later is handled.
pub fn install(rt: &tokio::runtime::Runtime, source: Arc<dyn ImageSource>) {
    use tokio::signal::unix::{SignalKind, signal};
    let _guard = rt.enter();
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            log::warn!("cannot handle Ctrl-C and SIGTERM: {e}");
            return;
        }
    };
    rt.spawn(async move {
        let code = tokio::select! {
            _ = int.recv() => EXIT_SIGINT,
            _ = term.recv() => EXIT_SIGTERM,
        };
        INTERRUPTED.store(code, Ordering::SeqCst);
        log::error!("interrupted: removing containers and temporary files");
        output::remove_pending();
        let cleanup = tokio::time::timeout(CLEANUP_LIMIT, source.abort());
        tokio::select! {
            r = cleanup => if r.is_err() {
                log::error!("containers were not all removed within {} s", CLEANUP_LIMIT.as_secs());
            },
            // A second signal: stop waiting.
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        output::remove_pending();
        exit_now(code);
    });
}

/// Ends the process at once with `code`: no destructors, no flushing of standard output
/// (which may be a pipe nobody reads), no joining of threads that may be blocked on it.
fn exit_now(code: u8) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes no pointers and never returns; skipping atexit handlers and
    // buffered-output flushing is the point (they could block on the unread output).
    unsafe { libc::_exit(i32::from(code)) }
}

/// When a signal is being handled, waits for the handler to end the process (it is removing
/// containers) and returns its status only if it has not done so after a while.
pub fn wait_if_interrupted() -> Option<u8> {
    let code = interrupted()?;
    std::thread::sleep(CLEANUP_LIMIT + Duration::from_secs(5));
    Some(code)
}
