//! Cross-crate conformance tests live in `tests/tests/`: every backend against the CPU
//! reference on fresh random inputs with NaN-poisoned outputs.
