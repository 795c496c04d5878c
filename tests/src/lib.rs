//! Shared test support (being written).
