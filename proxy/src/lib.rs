//! shifter's data plane (work in progress).
