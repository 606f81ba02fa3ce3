//! Property tests of the compiled graph: waves, orders and closures on random DAGs, and cycle
//! reports on random graphs that are not DAGs, checked against naive reference computations.

use std::collections::{BTreeSet, VecDeque};

use launchgraph::graph::{Cycle, Cycles, Graph, MAX_CYCLES_REPORTED};
use proptest::prelude::*;
use proptest::sample::subsequence;

/// A random DAG on `n` units as (unit, requirement) pairs, possibly repeated.
///
/// Edges are drawn from a higher to a lower index and then relabelled by a random permutation,
/// so no property can lean on requirements having lower indices.
#[derive(Debug, Clone)]
struct Dag {
    n: usize,
    /// In the hidden acyclic numbering: `.0 > .1`.
    edges: Vec<(usize, usize)>,
    /// Hidden index to public index.
    perm: Vec<usize>,
}

impl Dag {
    fn public_edges(&self) -> Vec<(usize, usize)> {
        self.edges
            .iter()
            .map(|&(a, b)| (self.perm[a], self.perm[b]))
            .collect()
    }
}

fn dag(max_units: usize) -> impl Strategy<Value = Dag> {
    (1..=max_units).prop_flat_map(|n| {
        let pairs = prop::collection::vec((0..n, 0..n), 0..=3 * n);
        let perm = Just((0..n).collect::<Vec<_>>()).prop_shuffle();
        (Just(n), pairs, perm).prop_map(|(n, pairs, perm)| Dag {
            n,
            edges: pairs
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.max(b), a.min(b)))
                .collect(),
            perm,
        })
    })
}

/// `requires[i]`, in input order and with any duplicates, from (unit, requirement) pairs.
fn requires_of(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut requires = vec![Vec::new(); n];
    for &(a, b) in edges {
        requires[a].push(b);
    }
    requires
}

/// Everything reachable from `i` along `next`, excluding `i`, by plain breadth-first search.
fn naive_reach(i: usize, next: &[Vec<usize>]) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([i]);
    while let Some(v) = queue.pop_front() {
        for &w in &next[v] {
            if w != i && seen.insert(w) {
                queue.push_back(w);
            }
        }
    }
    seen
}

/// Sorts units into start order: by wave, then index.
fn in_start_order(g: &Graph, units: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = units.into_iter().collect();
    v.sort_by_key(|&u| (g.wave_of(u), u));
    v
}

/// Every elementary cycle, rotated to its smallest node and sorted, by trying every simple
/// path: exponential, so only for small graphs.
fn naive_cycles(requires: &[Vec<usize>]) -> Vec<Cycle> {
    fn extend(
        requires: &[Vec<usize>],
        path: &mut Vec<usize>,
        on_path: &mut [bool],
        out: &mut Vec<Cycle>,
    ) {
        let (first, last) = (path[0], path[path.len() - 1]);
        let mut next: Vec<usize> = requires[last].clone();
        next.sort_unstable();
        next.dedup();
        for w in next {
            if w == first {
                out.push(Cycle(path.clone()));
            } else if w > first && !on_path[w] {
                on_path[w] = true;
                path.push(w);
                extend(requires, path, on_path, out);
                path.pop();
                on_path[w] = false;
            }
        }
    }
    let mut out = Vec::new();
    let mut on_path = vec![false; requires.len()];
    for s in 0..requires.len() {
        on_path[s] = true;
        extend(requires, &mut vec![s], &mut on_path, &mut out);
        on_path[s] = false;
    }
    out.sort();
    out
}

/// Checks what must hold of any cycle report, whatever the graph.
fn check_report_shape(c: &Cycles, edges: &BTreeSet<(usize, usize)>) -> Result<(), TestCaseError> {
    prop_assert!(!c.cycles.is_empty());
    prop_assert!(c.cycles.len() <= MAX_CYCLES_REPORTED);
    prop_assert!(!c.truncated || c.cycles.len() == MAX_CYCLES_REPORTED);
    // Sorted strictly: deterministic and without duplicates.
    prop_assert!(c.cycles.windows(2).all(|w| w[0] < w[1]), "{:?}", c.cycles);
    for cycle in &c.cycles {
        let nodes = &cycle.0;
        prop_assert_eq!(
            Some(&nodes[0]),
            nodes.iter().min(),
            "not rotated: {:?}",
            nodes
        );
        let distinct: BTreeSet<_> = nodes.iter().collect();
        prop_assert_eq!(distinct.len(), nodes.len(), "not elementary: {:?}", nodes);
        for k in 0..nodes.len() {
            let edge = (nodes[k], nodes[(k + 1) % nodes.len()]);
            prop_assert!(
                edges.contains(&edge),
                "{:?} is not an edge of {:?}",
                edge,
                nodes
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn dags_compile_into_consistent_waves(d in dag(60)) {
        let edges = d.public_edges();
        let g = Graph::compile(requires_of(d.n, &edges)).expect("a DAG compiles");
        prop_assert_eq!(g.len(), d.n);
        let distinct: BTreeSet<_> = edges.iter().copied().collect();
        prop_assert_eq!(g.edge_count(), distinct.len());

        for u in 0..d.n {
            let reqs: Vec<usize> =
                distinct.iter().filter(|e| e.0 == u).map(|e| e.1).collect();
            prop_assert_eq!(g.requires(u), &reqs[..]);
            let deps: Vec<usize> =
                distinct.iter().filter(|e| e.1 == u).map(|e| e.0).collect::<BTreeSet<_>>()
                    .into_iter().collect();
            prop_assert_eq!(g.dependents(u), &deps[..]);

            let w = g.wave_of(u);
            prop_assert_eq!(w == 0, reqs.is_empty());
            for &r in &reqs {
                prop_assert!(g.wave_of(r) < w, "{} requires {} but is not in a later wave", u, r);
            }
            // Not merely later: as early as its requirements allow.
            if let Some(highest) = reqs.iter().map(|&r| g.wave_of(r)).max() {
                prop_assert_eq!(w, highest + 1);
            }
        }

        let mut all: Vec<usize> = Vec::new();
        for (k, wave) in g.waves().iter().enumerate() {
            prop_assert!(!wave.is_empty());
            prop_assert!(wave.windows(2).all(|p| p[0] < p[1]));
            prop_assert!(wave.iter().all(|&u| g.wave_of(u) == k));
            all.extend(wave);
        }
        prop_assert_eq!(&all, &g.start_order());
        all.sort_unstable();
        prop_assert_eq!(all, (0..d.n).collect::<Vec<_>>());
    }

    #[test]
    fn stop_order_stops_every_dependent_before_its_requirements(d in dag(60)) {
        let edges = d.public_edges();
        let g = Graph::compile(requires_of(d.n, &edges)).unwrap();
        let stop = g.stop_order();
        let mut position = vec![usize::MAX; d.n];
        for (p, &u) in stop.iter().enumerate() {
            position[u] = p;
        }
        prop_assert!(position.iter().all(|&p| p != usize::MAX), "every unit stops once");
        prop_assert_eq!(stop.len(), d.n);
        for &(unit, requirement) in &edges {
            prop_assert!(position[unit] < position[requirement]);
        }
    }

    #[test]
    fn closures_match_a_naive_search(d in dag(60)) {
        let edges = d.public_edges();
        let requires = requires_of(d.n, &edges);
        let mut dependents = vec![Vec::new(); d.n];
        for &(a, b) in &edges {
            dependents[b].push(a);
        }
        let g = Graph::compile(requires.clone()).unwrap();
        for i in 0..d.n {
            prop_assert_eq!(
                g.transitive_dependents(i),
                in_start_order(&g, naive_reach(i, &dependents))
            );
            prop_assert_eq!(
                g.transitive_requirements(i),
                in_start_order(&g, naive_reach(i, &requires))
            );
        }
    }

    #[test]
    fn a_planted_cycle_is_always_reported(
        (d, path) in dag(40).prop_flat_map(|d| {
            let n = d.n;
            (Just(d), subsequence((0..n).collect::<Vec<_>>(), 1..=n.min(8)))
        })
    ) {
        // `path` ascends in the hidden numbering; chain it from highest to lowest (edges the
        // DAG could hold) and close it with the one edge that goes upwards. One node is a
        // self-loop.
        let mut planted = d.clone();
        for p in path.windows(2) {
            planted.edges.push((p[1], p[0]));
        }
        let (lowest, highest) = (path[0], path[path.len() - 1]);
        planted.edges.push((lowest, highest));
        let edges = planted.public_edges();
        let back = (d.perm[lowest], d.perm[highest]);

        let c = Graph::compile(requires_of(d.n, &edges)).expect_err("a cycle was planted");
        check_report_shape(&c, &edges.iter().copied().collect())?;

        // Without the back edge the graph is a DAG, so every cycle must use it.
        for cycle in &c.cycles {
            let uses_back = cycle.closed_path().collect::<Vec<_>>().windows(2)
                .any(|e| (e[0], e[1]) == back);
            prop_assert!(uses_back, "{:?} avoids the back edge {:?}", cycle.0, back);
        }
        // The planted cycle itself, read in requires order from its smallest node.
        let mut expected: Vec<usize> = path.iter().rev().map(|&h| d.perm[h]).collect();
        let smallest = (0..expected.len()).min_by_key(|&k| expected[k]).unwrap();
        expected.rotate_left(smallest);
        prop_assert!(
            c.truncated || c.cycles.contains(&Cycle(expected.clone())),
            "{:?} not among {:?}", expected, c.cycles
        );
    }

    #[test]
    fn small_graphs_report_exactly_the_naive_cycles(
        (n, pairs) in (1usize..=7).prop_flat_map(|n| {
            (Just(n), prop::collection::vec((0..n, 0..n), 0..=n * n))
        })
    ) {
        let requires = requires_of(n, &pairs);
        let expected = naive_cycles(&requires);
        match Graph::compile(requires) {
            Ok(_) => prop_assert!(expected.is_empty(), "missed cycles {:?}", expected),
            Err(c) => {
                check_report_shape(&c, &pairs.iter().copied().collect())?;
                prop_assert_eq!(c.truncated, expected.len() > MAX_CYCLES_REPORTED);
                let shown = expected.len().min(MAX_CYCLES_REPORTED);
                prop_assert_eq!(&c.cycles[..], &expected[..shown]);
            }
        }
    }
}
