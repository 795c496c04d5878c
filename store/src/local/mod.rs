//! Local backend (being written).
