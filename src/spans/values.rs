//! Short string attribute values shared instead of copied. A recorded span's strings are
//! freed on the export thread, and every such free contends with the allocations of the
//! thread creating spans (glibc takes the arena's lock for both). Values repeat (methods,
//! routes, table names), so each thread keeps the most recent value per hash slot and hands
//! out another reference to it: no allocation when it repeats, and nothing for the export
//! thread to free but a reference count.

use std::cell::RefCell;
use std::sync::Arc;

use opentelemetry::StringValue;

/// Slots per thread; a value evicts the one in its slot.
const SLOTS: usize = 256;
/// Longer values are copied: they rarely repeat, and a slot should stay small.
const MAX_SHARED_LEN: usize = 64;

thread_local! {
    static RECENT: RefCell<Vec<Option<Arc<str>>>> = RefCell::new(vec![None; SLOTS]);
}

/// `value` as an attribute value, shared with earlier equal values on this thread.
pub(crate) fn shared(value: &str) -> StringValue {
    if value.len() > MAX_SHARED_LEN {
        return StringValue::from(value.to_owned());
    }
    let slot = slot_of(value);
    let kept = RECENT
        .try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            let entry = recent.get_mut(slot)?;
            if let Some(kept) = entry.as_ref().filter(|kept| ***kept == *value) {
                return Some(kept.clone());
            }
            let fresh: Arc<str> = Arc::from(value);
            *entry = Some(fresh.clone());
            Some(fresh)
        })
        .ok()
        .flatten();
    match kept {
        Some(kept) => StringValue::from(kept),
        None => StringValue::from(value.to_owned()),
    }
}

/// FNV-1a: short keys, no need for a keyed hash (a collision only costs a copy).
fn slot_of(value: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_value_is_the_same_allocation_and_a_long_one_a_copy() {
        let first = shared("GET");
        let again = shared("GET");
        assert_eq!(first.as_str(), "GET");
        assert_eq!(first.as_str().as_ptr(), again.as_str().as_ptr());
        let long = "x".repeat(MAX_SHARED_LEN + 1);
        assert_ne!(
            shared(&long).as_str().as_ptr(),
            shared(&long).as_str().as_ptr()
        );
        assert_eq!(shared(&long).as_str(), long);
    }

    #[test]
    fn values_in_the_same_slot_replace_each_other_and_stay_correct() {
        let values: Vec<String> = (0..4 * SLOTS).map(|i| format!("value-{i}")).collect();
        for value in &values {
            assert_eq!(shared(value).as_str(), value);
        }
        for value in values.iter().rev() {
            assert_eq!(shared(value).as_str(), value);
        }
    }
}
