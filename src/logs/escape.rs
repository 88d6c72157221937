//! JSON string escaping straight into the line buffer, with no intermediate allocation.

use std::fmt;

/// Appends `s` to `out` as JSON string content (without the surrounding quotes).
#[inline]
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // Nearly every key and value needs no escaping. This test has no early exit, so the
    // compiler turns it into a few vector compares instead of a branch per byte.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.push_str(s);
        return;
    }
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

#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
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

/// Appends a value's `Debug` form as a quoted JSON string of at most `limit` bytes of content
/// before escaping.
#[inline]
pub(crate) fn debug_quoted_into(out: &mut String, value: &dyn fmt::Debug, limit: usize) {
    display_or_debug_quoted_into(out, format_args!("{value:?}"), limit)
}

/// Appends formatted text as a quoted JSON string, cut like [`quoted_bounded_into`].
pub(crate) fn display_or_debug_quoted_into(
    out: &mut String,
    args: fmt::Arguments<'_>,
    limit: usize,
) {
    use fmt::Write;
    out.push('"');
    let mut bounded = BoundedEscaper::new(out, limit);
    // A Debug impl that returns Err leaves what it wrote so far; the line stays valid JSON.
    let _ = bounded.write_fmt(args);
    bounded.finish();
    out.push('"');
}

/// Appends `s` as a quoted JSON string; beyond `limit` bytes it is cut on a character boundary
/// and ends with a note of how many bytes were left out.
#[inline]
pub(crate) fn quoted_bounded_into(out: &mut String, s: &str, limit: usize) {
    if s.len() <= limit {
        return quoted_into(out, s);
    }
    out.push('"');
    let mut bounded = BoundedEscaper::new(out, limit);
    let _ = fmt::Write::write_str(&mut bounded, s);
    bounded.finish();
    out.push('"');
}

/// A `fmt::Write` that escapes what is written through it into the line, with no temporary
/// `String`, and stops after `left` bytes, counting the rest.
pub(crate) struct BoundedEscaper<'a> {
    out: &'a mut String,
    left: usize,
    omitted: usize,
}

impl<'a> BoundedEscaper<'a> {
    pub(crate) fn new(out: &'a mut String, limit: usize) -> Self {
        BoundedEscaper {
            out,
            left: limit,
            omitted: 0,
        }
    }

    /// Appends the truncation note, if anything was left out.
    pub(crate) fn finish(self) {
        if self.omitted > 0 {
            self.out.push_str("...[truncated ");
            self.out.push_str(itoa::Buffer::new().format(self.omitted));
            self.out.push_str(" bytes]");
        }
    }
}

impl fmt::Write for BoundedEscaper<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            escape_into(self.out, s);
            return Ok(());
        }
        let mut cut = self.left;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        escape_into(self.out, &s[..cut]);
        self.omitted += s.len() - cut;
        self.left = 0;
        Ok(())
    }
}
