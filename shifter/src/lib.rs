//! shifter as a library: the `kubectl shift` verbs, shared by the `shifter` and `kubectl-shift`
//! executables so both stay thin argument parsers.

pub mod cli;
