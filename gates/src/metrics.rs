//! [`Metrics`]: a sample's counters or gauges by name, compact in memory.
//!
//! A 24 h × 100-node proof holds ~864,000 samples of ~40 metrics each. As a
//! `BTreeMap<String, _>` per sample that is ~35 million small heap strings, which alone costs
//! seconds to build and gigabytes to hold. Here the sorted name list ([`MetricNames`]) is
//! shared (`Arc`) by every sample that reports the same names — a proof reader hands one list to
//! all of a node's samples — and each sample keeps only a `Vec` of values in name order. The
//! evaluator reads a column by position once it has matched a name list (see
//! `series::NodeSeries::columns`).
//!
//! The API is the map-like subset the code uses (`get`, `insert`, `iter`, …), iteration is in
//! name order like a `BTreeMap`, and serde reads and writes a JSON object exactly as the map
//! did, so proofs written before this type existed read unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sorted, duplicate-free list of metric names, cheap to clone and share.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricNames(Arc<[Box<str>]>);

impl MetricNames {
    /// The names sorted and de-duplicated.
    pub fn new<I, S>(names: I) -> MetricNames
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let mut names: Vec<Box<str>> = names.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        MetricNames(names.into())
    }

    /// The names if they are already strictly increasing (sorted, no duplicate), else `None`.
    pub fn from_sorted(names: Vec<Box<str>>) -> Option<MetricNames> {
        names
            .windows(2)
            .all(|w| w[0] < w[1])
            .then(|| MetricNames(names.into()))
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no names.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.0.iter().map(|n| &**n)
    }

    /// Position of `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|n| (**n).cmp(name)).ok()
    }

    /// Whether both are the same shared list (a pointer comparison, no string compared).
    pub fn same_list(&self, other: &MetricNames) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for MetricNames {
    fn default() -> Self {
        MetricNames(Arc::from(Vec::<Box<str>>::new()))
    }
}

impl fmt::Debug for MetricNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Values by metric name, in name order (see the module docs).
#[derive(Clone)]
pub struct Metrics<V> {
    names: MetricNames,
    values: Vec<V>,
}

impl<V> Metrics<V> {
    /// No metrics.
    pub fn new() -> Metrics<V> {
        Metrics {
            names: MetricNames::default(),
            values: Vec::new(),
        }
    }

    /// Values for a shared name list, in its order; `None` when the lengths differ.
    pub fn from_parts(names: MetricNames, values: Vec<V>) -> Option<Metrics<V>> {
        (names.len() == values.len()).then_some(Metrics { names, values })
    }

    /// The name list.
    pub fn names(&self) -> &MetricNames {
        &self.names
    }

    /// The values in name order.
    pub fn values(&self) -> &[V] {
        &self.values
    }

    /// Number of metrics.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.names.position(name).map(|i| &self.values[i])
    }

    /// The value of `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        self.names.position(name).map(|i| &mut self.values[i])
    }

    /// Whether `name` is present.
    pub fn contains_key(&self, name: &str) -> bool {
        self.names.position(name).is_some()
    }

    /// `(name, value)` in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &V)> + '_ {
        self.names.iter().zip(self.values.iter())
    }

    /// `(name, value)` in name order, values mutable.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = (&str, &mut V)> + '_ {
        self.names.iter().zip(self.values.iter_mut())
    }

    /// The names in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.names.iter()
    }

    /// Sets `name` to `value`, returning the old value. Adding a new name copies the name list
    /// (this sample stops sharing it).
    pub fn insert(&mut self, name: String, value: V) -> Option<V> {
        match self.names.0.binary_search_by(|n| (**n).cmp(name.as_str())) {
            Ok(i) => Some(std::mem::replace(&mut self.values[i], value)),
            Err(i) => {
                let mut names: Vec<Box<str>> = self.names.0.to_vec();
                names.insert(i, name.into_boxed_str());
                self.names = MetricNames(names.into());
                self.values.insert(i, value);
                None
            }
        }
    }

    /// Shares `last`'s name list when it has the same names (and otherwise makes this list
    /// the new `last`): consecutive samples of one node then hold one list between them.
    pub fn share_names(&mut self, last: &mut Option<MetricNames>) {
        match last {
            Some(names) if names.same_list(&self.names) => {}
            Some(names) if *names == self.names => self.names = names.clone(),
            _ => *last = Some(self.names.clone()),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        let i = self.names.position(name)?;
        let mut names: Vec<Box<str>> = self.names.0.to_vec();
        names.remove(i);
        self.names = MetricNames(names.into());
        Some(self.values.remove(i))
    }
}

impl<V> Default for Metrics<V> {
    fn default() -> Self {
        Metrics::new()
    }
}

impl<V: PartialEq> PartialEq for Metrics<V> {
    fn eq(&self, other: &Self) -> bool {
        (self.names.same_list(&other.names) || self.names == other.names)
            && self.values == other.values
    }
}

impl<V: fmt::Debug> fmt::Debug for Metrics<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> From<BTreeMap<String, V>> for Metrics<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        let (names, values): (Vec<Box<str>>, Vec<V>) = map
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v))
            .unzip();
        Metrics {
            names: MetricNames(names.into()),
            values,
        }
    }
}

impl<K: Into<String>, V> FromIterator<(K, V)> for Metrics<V> {
    /// Later duplicates win, as in a map.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: BTreeMap<String, V> = iter.into_iter().map(|(k, v)| (k.into(), v)).collect();
        map.into()
    }
}

impl<const N: usize, K: Into<String>, V> From<[(K, V); N]> for Metrics<V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<'a, V> IntoIterator for &'a Metrics<V> {
    type Item = (&'a str, &'a V);
    type IntoIter = std::iter::Zip<
        std::iter::Map<std::slice::Iter<'a, Box<str>>, fn(&'a Box<str>) -> &'a str>,
        std::slice::Iter<'a, V>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let name: fn(&'a Box<str>) -> &'a str = |n| n;
        self.names.0.iter().map(name).zip(self.values.iter())
    }
}

impl<V: Serialize> Serialize for Metrics<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Metrics<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, V>::deserialize(deserializer).map(Metrics::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_sorted_map() {
        let mut m: Metrics<u64> = [("b", 2), ("a", 1), ("b", 3)].into();
        assert_eq!(m.iter().collect::<Vec<_>>(), [("a", &1), ("b", &3)]);
        assert_eq!(m.get("b"), Some(&3));
        assert_eq!(m.get("c"), None);
        assert_eq!(m.insert("c".into(), 4), None);
        assert_eq!(m.insert("a".into(), 5), Some(1));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        *m.get_mut("b").unwrap() += 1;
        assert_eq!(m.remove("b"), Some(4));
        assert_eq!(m.len(), 2);
        assert!(!m.contains_key("b"));
    }

    #[test]
    fn json_is_the_map_it_replaced() {
        let map = BTreeMap::from([("x_total".to_string(), 7u64), ("a_total".to_string(), 1)]);
        let m: Metrics<u64> = map.clone().into();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let back: Metrics<u64> = serde_json::from_str(r#"{"x_total":7,"a_total":1}"#).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn shared_names_compare_by_pointer_and_by_content() {
        let names = MetricNames::new(["b", "a"]);
        let one = Metrics::from_parts(names.clone(), vec![1.0, 2.0]).unwrap();
        let two = Metrics::from_parts(names.clone(), vec![1.0, 2.0]).unwrap();
        assert!(one.names().same_list(two.names()));
        assert_eq!(one, two);
        let three: Metrics<f64> = [("a", 1.0), ("b", 2.0)].into();
        assert!(!one.names().same_list(three.names()));
        assert_eq!(one, three);
        assert!(Metrics::from_parts(names, vec![1.0]).is_none());
        assert!(MetricNames::from_sorted(vec!["b".into(), "a".into()]).is_none());
        assert!(MetricNames::from_sorted(vec!["a".into(), "a".into()]).is_none());
    }
}
