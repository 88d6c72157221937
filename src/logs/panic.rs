//! Logs every panic as one `error` line (with the trace ids of the span it happened in)
//! before the previously installed hook runs.

use std::panic::PanicHookInfo;

pub(crate) fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
        let message = panic_message(info);
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            target: "panic",
            location = %location,
            panic.message = %message,
            thread.name = thread.name().unwrap_or("<unnamed>"),
            "panicked: {message}"
        );
        // With `panic = "abort"`, or a panic that ends the process, this is the last chance
        // to write out the buffered lines, this one included.
        super::flush_installed_writer();
        previous(info);
    }));
}

fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
