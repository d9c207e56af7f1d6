//! Fuzz target `pipeline`: any bytes through `shrink::fuzz_checks::pipeline` (its rule is documented
//! there); a defect it reports, a panic, an abort or an out-of-memory is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(defect) = shrink::fuzz_checks::pipeline(data) {
        panic!("{defect}");
    }
});
