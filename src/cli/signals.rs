//! Ctrl-C (SIGINT) and SIGTERM during training: the first sets a flag that the
//! training loop, the text loader and the end-of-run sample check, so the run saves a
//! checkpoint, releases its folder's lock and exits with 128 + the signal (130, 143); a
//! second one of either ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The signal caught (0: none), and whether one was (for the second's shutdown).
struct Caught {
    signal: Arc<AtomicUsize>,
    armed: Arc<AtomicBool>,
}

fn caught() -> &'static Caught {
    static CAUGHT: OnceLock<Caught> = OnceLock::new();
    CAUGHT.get_or_init(|| Caught {
        signal: Arc::new(AtomicUsize::new(0)),
        armed: Arc::new(AtomicBool::new(false)),
    })
}

/// Installs the handlers (once; later calls do nothing).
pub fn catch_interrupt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let c = caught();
        for sig in [SIGINT, SIGTERM] {
            // In order: a signal after the first exits at once; the first is recorded.
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, c.armed.clone());
            let _ = signal_hook::flag::register_usize(sig, c.signal.clone(), sig as usize);
            let _ = signal_hook::flag::register(sig, c.armed.clone());
        }
    });
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupt`].
pub fn interrupted() -> bool {
    caught().signal.load(Ordering::SeqCst) != 0
}

/// The exit status after an interruption: 128 + the signal (130 for Ctrl-C, 143 for
/// SIGTERM).
pub fn interrupted_exit() -> u8 {
    match caught().signal.load(Ordering::SeqCst) {
        0 => 130,
        sig => (128 + sig).min(255) as u8,
    }
}
