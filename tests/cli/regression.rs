//! Regression tests, one per defect, each named after the defect it pins (as ripgrep's
//! `tests/regression.rs`): the name says what went wrong, the body shows it cannot again.
