//! shifter as a library: `shifter init`, and the `kubectl shift` verbs, shared by the `shifter` and `kubectl-shift`
//! executables so both stay thin argument parsers.

pub mod cli;
pub mod init;
