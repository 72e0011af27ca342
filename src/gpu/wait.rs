//! Waiting for the device without blocking a thread: a one-shot channel that a wgpu
//! callback (`map_async`) completes and an `async` caller awaits. Natively the blocking
//! API drives such futures with `pollster` after `device.poll`; in a browser they are
//! awaited, and the browser's event loop runs the callback.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    /// The sender is gone without a value: the future ends with `None`.
    closed: bool,
}

/// The sending half: [`Sender::send`] once (from a callback).
pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);

/// The receiving half, a future of the value (`None` when the sender was dropped
/// without sending, e.g. a callback that never runs because the device was lost).
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

/// A new one-shot channel.
pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    /// Hands `value` to the receiver and wakes it.
    pub(crate) fn send(self, value: T) {
        let waker = match self.0.lock() {
            Ok(mut s) => {
                s.value = Some(value);
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = match self.0.lock() {
            Ok(mut s) => {
                s.closed = true;
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(None);
        };
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Runs `f` to its end on this thread, for the blocking API natively. In a browser,
/// where a thread may not block, it refuses: the `*_async` form of the call is the
/// one to await there.
pub(crate) fn blocking<T>(f: impl Future<Output = crate::Result<T>>) -> crate::Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        Err(crate::GruError::State(
            "this call waits for the device, which a browser cannot do: await its `_async` form"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_sent_before_or_after_the_wait_arrives() {
        let (tx, rx) = oneshot();
        tx.send(3);
        assert_eq!(pollster::block_on(rx), Some(3));
        let (tx, rx) = oneshot::<u8>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(5)
        });
        assert_eq!(pollster::block_on(rx), Some(5));
        t.join().unwrap();
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(pollster::block_on(rx), None);
    }
}
