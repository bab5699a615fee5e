//! Target selectors: which nodes a fault touches, chosen from the fleet's names and the run's
//! seed, so the same seed picks the same targets again (and the choice is recorded).
//!
//! | selector | targets | partition cut |
//! |---|---|---|
//! | `node:NAME` | that node | NAME ↔ everyone else |
//! | `random:K` | K nodes, seeded | the K ↔ the rest |
//! | `pair:A,B` / `pair` | A and B (`pair`: a seeded pair) | A ↔ B |
//! | `halves` | everyone, split in two seeded halves | half ↔ half |
//! | `one_way:A->B` / `one_way` | A and B (seeded when bare) | A → B only |

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// A target selector as written in a scenario (`node:NAME`, `random:K`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// One named node.
    Node(String),
    /// K nodes chosen with the seed.
    Random(usize),
    /// Two nodes; `None` = a seeded pair.
    Pair(Option<(String, String)>),
    /// The fleet split in two seeded halves.
    Halves,
    /// An ordered pair, cut in one direction only; `None` = a seeded ordered pair.
    OneWay(Option<(String, String)>),
}

/// Why a selector could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The text is not a selector.
    #[error(
        "`{0}` is not a target selector (node:NAME, random:K, pair[:A,B], halves, one_way[:A->B])"
    )]
    Syntax(String),
    /// A named node is not in the fleet.
    #[error("selector `{selector}` names `{node}`, which is not in the fleet")]
    UnknownNode {
        /// The selector.
        selector: String,
        /// The missing name.
        node: String,
    },
    /// The fleet is too small for the selector.
    #[error("selector `{selector}` needs {needed} nodes; the fleet has {have}")]
    TooFew {
        /// The selector.
        selector: String,
        /// Nodes needed.
        needed: usize,
        /// Nodes in the fleet.
        have: usize,
    },
}

impl FromStr for Selector {
    type Err = SelectError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || SelectError::Syntax(text.to_owned());
        let name = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && !s.contains([',', ' ']) && !s.contains("->"))
                .then(|| s.to_owned())
                .ok_or_else(bad)
        };
        let text_trim = text.trim();
        let (head, rest) = match text_trim.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (text_trim, None),
        };
        match (head, rest) {
            ("node", Some(n)) => Ok(Selector::Node(name(n)?)),
            ("random", Some(k)) => match k.trim().parse::<usize>() {
                Ok(k) if k >= 1 => Ok(Selector::Random(k)),
                _ => Err(bad()),
            },
            ("pair", None) => Ok(Selector::Pair(None)),
            ("pair", Some(ab)) => {
                let (a, b) = ab.split_once(',').ok_or_else(bad)?;
                let (a, b) = (name(a)?, name(b)?);
                if a == b {
                    return Err(bad());
                }
                Ok(Selector::Pair(Some((a, b))))
            }
            ("halves", None) => Ok(Selector::Halves),
            ("one_way", None) => Ok(Selector::OneWay(None)),
            ("one_way", Some(ab)) => {
                let (a, b) = ab.split_once("->").ok_or_else(bad)?;
                let (a, b) = (name(a)?, name(b)?);
                if a == b {
                    return Err(bad());
                }
                Ok(Selector::OneWay(Some((a, b))))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Node(n) => write!(f, "node:{n}"),
            Selector::Random(k) => write!(f, "random:{k}"),
            Selector::Pair(None) => write!(f, "pair"),
            Selector::Pair(Some((a, b))) => write!(f, "pair:{a},{b}"),
            Selector::Halves => write!(f, "halves"),
            Selector::OneWay(None) => write!(f, "one_way"),
            Selector::OneWay(Some((a, b))) => write!(f, "one_way:{a}->{b}"),
        }
    }
}

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The nodes a fault touches, resolved against the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// The selector, as written.
    pub selector: String,
    /// Nodes touched, in fleet order.
    pub nodes: Vec<String>,
    /// For partitions: the two sides (`a` cut from `b`); for one-way cuts `a` = the sender whose
    /// traffic to `b` is dropped.
    pub a: Vec<String>,
    /// The other side.
    pub b: Vec<String>,
    /// Whether only `a → b` is cut.
    pub one_way: bool,
}

impl Targets {
    /// Ordered pairs a partition between the sides cuts (`a → b`, and `b → a` unless one-way).
    pub fn cut_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for x in &self.a {
            for y in &self.b {
                pairs.push((x.clone(), y.clone()));
                if !self.one_way {
                    pairs.push((y.clone(), x.clone()));
                }
            }
        }
        pairs
    }

    /// Ordered pairs that may fail while the cut holds: the cut pairs and, for a one-way cut,
    /// the reverse direction too (over QUIC the reverse stalls once its ACKs stop arriving).
    pub fn disturbed_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = self.cut_pairs();
        if self.one_way {
            pairs.extend(self.cut_pairs().into_iter().map(|(x, y)| (y, x)));
        }
        pairs
    }
}

/// Resolves `selector` over the fleet `names` (in fleet order) with `seed`. Pure: the same
/// inputs give the same targets.
pub fn resolve(selector: &Selector, names: &[String], seed: u64) -> Result<Targets, SelectError> {
    let text = selector.to_string();
    let unique: BTreeSet<&String> = names.iter().collect();
    let have = unique.len();
    let too_few = |needed: usize| SelectError::TooFew {
        selector: text.clone(),
        needed,
        have,
    };
    let known = |node: &str| {
        if names.iter().any(|n| n == node) {
            Ok(node.to_owned())
        } else {
            Err(SelectError::UnknownNode {
                selector: text.clone(),
                node: node.to_owned(),
            })
        }
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut shuffled: Vec<String> = names.to_vec();
    shuffled.shuffle(&mut rng);
    let in_fleet_order = |picked: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| picked.contains(n))
            .cloned()
            .collect()
    };
    let others = |picked: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| !picked.contains(n))
            .cloned()
            .collect()
    };
    let (nodes, a, b, one_way) = match selector {
        Selector::Node(n) => {
            let n = known(n)?;
            if have < 2 {
                return Err(too_few(2));
            }
            let a = vec![n.clone()];
            (a.clone(), a.clone(), others(&a), false)
        }
        Selector::Random(k) => {
            // A cut needs someone left on the other side.
            if *k >= have {
                return Err(too_few(k + 1));
            }
            let a = in_fleet_order(&shuffled[..*k]);
            (a.clone(), a.clone(), others(&a), false)
        }
        Selector::Pair(given) | Selector::OneWay(given) => {
            let (x, y) = match given {
                Some((x, y)) => (known(x)?, known(y)?),
                None if have >= 2 => (shuffled[0].clone(), shuffled[1].clone()),
                None => return Err(too_few(2)),
            };
            let one_way = matches!(selector, Selector::OneWay(_));
            (
                in_fleet_order(&[x.clone(), y.clone()]),
                vec![x],
                vec![y],
                one_way,
            )
        }
        Selector::Halves => {
            if have < 2 {
                return Err(too_few(2));
            }
            let half = shuffled.len() / 2;
            let a = in_fleet_order(&shuffled[..half]);
            let b = in_fleet_order(&shuffled[half..]);
            (names.to_vec(), a, b, false)
        }
    };
    Ok(Targets {
        selector: text,
        nodes,
        a,
        b,
        one_way,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fleet(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn selectors_parse_and_print_back() {
        for text in [
            "node:node-3",
            "random:2",
            "pair",
            "pair:node-0,node-4",
            "halves",
            "one_way",
            "one_way:node-1->node-2",
        ] {
            let s: Selector = text.parse().expect(text);
            assert_eq!(s.to_string(), text);
        }
        for bad in [
            "",
            "node:",
            "random:0",
            "random:x",
            "pair:a",
            "pair:a,a",
            "one_way:a,b",
            "everyone",
            "node:a,b",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn node_isolates_one_node_from_the_rest() {
        let t = resolve(&"node:node-2".parse().unwrap(), &fleet(4), 1).unwrap();
        assert_eq!(t.nodes, vec!["node-2"]);
        assert_eq!(t.b, vec!["node-0", "node-1", "node-3"]);
        assert_eq!(t.cut_pairs().len(), 6);
        let err = resolve(&"node:node-9".parse().unwrap(), &fleet(4), 1).unwrap_err();
        assert!(matches!(err, SelectError::UnknownNode { .. }));
    }

    #[test]
    fn random_is_seeded_recorded_and_never_the_whole_fleet() {
        let s: Selector = "random:2".parse().unwrap();
        let a = resolve(&s, &fleet(6), 42).unwrap();
        let b = resolve(&s, &fleet(6), 42).unwrap();
        assert_eq!(a, b, "same seed, same targets");
        assert_eq!(a.nodes.len(), 2);
        let picks: BTreeSet<Vec<String>> = (0..32)
            .map(|seed| resolve(&s, &fleet(6), seed).unwrap().nodes)
            .collect();
        assert!(picks.len() > 4, "seeds must vary the choice: {picks:?}");
        assert!(resolve(&"random:6".parse().unwrap(), &fleet(6), 1).is_err());
    }

    #[test]
    fn halves_split_the_fleet_in_two_seeded_sides() {
        let t = resolve(&Selector::Halves, &fleet(6), 3).unwrap();
        assert_eq!((t.a.len(), t.b.len()), (3, 3));
        assert_eq!(t.nodes.len(), 6);
        assert_eq!(t.cut_pairs().len(), 18);
        assert!(t.a.iter().all(|x| !t.b.contains(x)));
        let odd = resolve(&Selector::Halves, &fleet(5), 3).unwrap();
        assert_eq!(odd.a.len() + odd.b.len(), 5);
    }

    #[test]
    fn one_way_cuts_one_direction_and_disturbs_both() {
        let t = resolve(&"one_way:node-0->node-1".parse().unwrap(), &fleet(3), 0).unwrap();
        assert_eq!(t.cut_pairs(), vec![("node-0".into(), "node-1".into())]);
        assert_eq!(t.disturbed_pairs().len(), 2);
        let seeded = resolve(&Selector::OneWay(None), &fleet(5), 9).unwrap();
        assert_eq!(seeded.cut_pairs().len(), 1);
        assert!(seeded.one_way);
    }

    #[test]
    fn pair_cuts_both_ways() {
        let t = resolve(&"pair:node-3,node-0".parse().unwrap(), &fleet(4), 0).unwrap();
        assert_eq!(t.nodes, vec!["node-0", "node-3"], "fleet order");
        assert_eq!(t.cut_pairs().len(), 2);
    }

    proptest! {
        #[test]
        fn resolved_targets_are_in_the_fleet_and_sides_disjoint(
            n in 2usize..40, k in 1usize..40, seed in any::<u64>(), which in 0usize..4,
        ) {
            let names = fleet(n);
            let selector = match which {
                0 => Selector::Random(k),
                1 => Selector::Halves,
                2 => Selector::Pair(None),
                _ => Selector::OneWay(None),
            };
            match resolve(&selector, &names, seed) {
                Ok(t) => {
                    prop_assert!(t.nodes.iter().all(|x| names.contains(x)));
                    prop_assert!(t.a.iter().all(|x| !t.b.contains(x)));
                    prop_assert!(!t.a.is_empty() && !t.b.is_empty());
                    prop_assert_eq!(resolve(&selector, &names, seed).unwrap(), t);
                }
                Err(SelectError::TooFew { .. }) => prop_assert!(k >= n && which == 0),
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}
