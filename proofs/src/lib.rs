//! `soak-proofs`: the proof directory as a versioned file format — names, version, atomic
//! writer, reader and renderers.
