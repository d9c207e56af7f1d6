//! Rules of the `Convert` family: Cast's target must be the declared output's dtype.
use super::RuleError;
use crate::DType;

/// Cast (and CastLike, imported as Cast) writes `to`; the node must declare that dtype.
pub fn check_cast_output(to: DType, declared: DType) -> Result<(), RuleError> {
    if declared != to {
        return Err(RuleError::invalid(format!(
            "Cast to {to} but the output is declared {declared}"
        )));
    }
    Ok(())
}
