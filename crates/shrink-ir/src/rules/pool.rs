//! Rules of the `Pool` family beyond the window (which [`crate::window`] owns): MaxPool's
//! `storage_order`.
use super::RuleError;

/// Whether MaxPool's Indices output counts column-major (`storage_order` 1) or row-major (0).
pub fn column_major(storage_order: i64) -> Result<bool, RuleError> {
    match storage_order {
        0 => Ok(false),
        1 => Ok(true),
        s => Err(RuleError::invalid(format!(
            "storage_order {s} must be 0 or 1"
        ))),
    }
}
