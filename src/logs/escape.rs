//! JSON string escaping straight into the line buffer, with no intermediate allocation.

use std::fmt;

/// Appends `s` to `out` as JSON string content (without the surrounding quotes).
#[inline]
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f | 0x7f => "",
            _ => continue,
        };
        // Every byte that needs escaping is ASCII, so these slices fall on char boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            push_unicode_escape(out, b);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

fn push_unicode_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\u00");
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 0xf) as usize] as char);
}

/// Appends `s` as a quoted JSON string.
#[inline]
pub(crate) fn quoted_into(out: &mut String, s: &str) {
    out.push('"');
    escape_into(out, s);
    out.push('"');
}

/// A `fmt::Write` that escapes everything written through it, so `Debug` and `Display`
/// output goes into the line without a temporary `String`.
pub(crate) struct Escaper<'a>(pub(crate) &'a mut String);

impl fmt::Write for Escaper<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends a value's `Debug` form as a quoted JSON string.
#[inline]
pub(crate) fn debug_quoted_into(out: &mut String, value: &dyn fmt::Debug) {
    use fmt::Write;
    out.push('"');
    // A Debug impl that returns Err leaves what it wrote so far; the line stays valid JSON.
    let _ = write!(Escaper(out), "{value:?}");
    out.push('"');
}
