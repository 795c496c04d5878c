//! objfs-fs (being written).
