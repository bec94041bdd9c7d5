//! The pure stage state machine (being written).
