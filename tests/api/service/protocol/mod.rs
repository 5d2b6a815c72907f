//! The protocol model's decision tables replayed against the real scripts (`conformance`), and
//! the counterexamples the model found, each as a test on the real scripts (`regressions`).

pub(crate) mod conformance;
mod real;
mod regressions;
