//! What entering a span put in place on this thread (a context guard), innermost last, taken
//! back by the span's id on exit: spans may be exited out of order.

use std::cell::RefCell;
use std::thread::LocalKey;

use tracing::span::Id;

/// One thread's stack; declare it with `thread_local!` and `const { Entered::new() }`.
pub(crate) struct Entered<T>(RefCell<Vec<(Id, T)>>);

impl<T> Entered<T> {
    pub(crate) const fn new() -> Self {
        Entered(RefCell::new(Vec::new()))
    }
}

/// Keeps `value` until `id` exits. A thread being torn down (or a re-entrant call) has no
/// stack to keep it on: it drops here.
pub(crate) fn push<T: 'static>(stack: &'static LocalKey<Entered<T>>, id: &Id, value: T) {
    let _ = stack.try_with(|stack| {
        if let Ok(mut entered) = stack.0.try_borrow_mut() {
            entered.push((id.clone(), value));
        }
    });
}

/// What `id`'s innermost enter kept, if anything. Dropped by the caller, outside the
/// stack's borrow: dropping a context guard may run code that logs.
pub(crate) fn take<T: 'static>(stack: &'static LocalKey<Entered<T>>, id: &Id) -> Option<T> {
    stack
        .try_with(|stack| {
            let mut entered = stack.0.try_borrow_mut().ok()?;
            let at = entered
                .iter()
                .rposition(|(entered_id, _)| entered_id == id)?;
            Some(entered.remove(at).1)
        })
        .ok()
        .flatten()
}
