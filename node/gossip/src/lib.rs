//! `soak-gossip`: the sans-IO PlumTree gossip core and its deterministic simulator.
