//! The compiled dependency graph: a pure, name-free graph over unit indices.
//!
//! This module owns what compiling `requires` edges produces: forward edges (what a unit
//! requires), reverse edges (what depends on it), the start waves, start and stop orders, the
//! transitive closures used to cascade restarts, and the report of every elementary cycle when
//! the edges do not form a DAG. It does not know unit names, files or diagnostics: callers sort
//! units by name before compiling (so index order is name order), reject unknown and
//! self-dependencies, and map indices back to names when they report.
//!
//! Everything except cycle enumeration runs in O((n + e) log n) and every traversal is
//! iterative, so a 10,000-unit chain cannot overflow the stack.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// The most cycles [`Graph::compile`] reports.
///
/// A graph can hold exponentially many elementary cycles (a complete graph on 12 nodes has
/// more than 100 million), and a person fixing unit files reads only the first few anyway.
/// Past this cap enumeration stops and [`Cycles::truncated`] is set.
pub const MAX_CYCLES_REPORTED: usize = 100;

/// One elementary cycle: `[a, b, c]` means a requires b, b requires c and c requires a.
///
/// Rotated so the smallest index comes first; a self-loop is a one-element cycle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cycle(pub Vec<usize>);

impl Cycle {
    /// The cycle as a closed path with its first node repeated at the end (`a, b, c, a`), the
    /// form in which it is shown to a user once indices are mapped to names.
    pub fn closed_path(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied().chain(self.0.first().copied())
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, i) in self.closed_path().enumerate() {
            if k > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

/// Why a graph did not compile: its elementary cycles.
///
/// `cycles` is sorted (by smallest node, then lexicographically) and holds no duplicates. When
/// `truncated` is set, the graph has more than [`MAX_CYCLES_REPORTED`] cycles and `cycles`
/// holds the first [`MAX_CYCLES_REPORTED`] of them in that order; how many more there are is
/// not counted, because counting them is as expensive as listing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycles {
    pub cycles: Vec<Cycle>,
    pub truncated: bool,
}

impl fmt::Display for Cycles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let more = if self.truncated {
            " (list truncated)"
        } else {
            ""
        };
        write!(f, "{} dependency cycle(s){more}", self.cycles.len())?;
        for c in &self.cycles {
            write!(f, "\n  {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Cycles {}

/// Adjacency lists packed into one array (compressed sparse rows): one allocation for all
/// edges, and each row is a contiguous, sorted slice.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Adjacency {
    /// Row `i` is `targets[start[i]..start[i + 1]]`.
    start: Vec<usize>,
    targets: Vec<usize>,
}

impl Adjacency {
    fn row(&self, i: usize) -> &[usize] {
        &self.targets[self.start[i]..self.start[i + 1]]
    }
}

/// A compiled, acyclic dependency graph over units `0..len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    requires: Adjacency,
    dependents: Adjacency,
    waves: Vec<Vec<usize>>,
    wave_of: Vec<usize>,
    /// Each unit's position in [`Graph::start_order`], the sort key of the closures.
    position: Vec<usize>,
}

impl Graph {
    /// Compiles `requires[i]`, the indices unit `i` requires (duplicates allowed).
    ///
    /// Fails with every elementary cycle (up to [`MAX_CYCLES_REPORTED`]) when the edges do not
    /// form a DAG.
    ///
    /// # Panics
    ///
    /// If an index is `>= requires.len()`: the caller resolves names first.
    pub fn compile(requires: Vec<Vec<usize>>) -> Result<Graph, Cycles> {
        let n = requires.len();
        let mut start = Vec::with_capacity(n + 1);
        start.push(0);
        let mut targets = Vec::with_capacity(requires.iter().map(Vec::len).sum());
        let mut indegree = vec![0usize; n];
        for (i, mut row) in requires.into_iter().enumerate() {
            row.sort_unstable();
            row.dedup();
            for &j in &row {
                assert!(j < n, "unit {i} requires unit {j}, but there are {n} units");
                indegree[j] += 1;
            }
            targets.extend_from_slice(&row);
            start.push(targets.len());
        }
        let requires = Adjacency { start, targets };
        let dependents = reverse(&requires, &indegree);

        // Kahn's algorithm, one wave at a time: a unit joins the wave after the one in which its
        // last requirement was placed, which is exactly 1 + the highest wave it requires.
        let mut pending: Vec<usize> = (0..n).map(|i| requires.row(i).len()).collect();
        let mut wave_of = vec![usize::MAX; n];
        let mut waves: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
        let mut placed = 0;
        while !current.is_empty() {
            let k = waves.len();
            let mut next = Vec::new();
            for &u in &current {
                wave_of[u] = k;
                for &d in dependents.row(u) {
                    pending[d] -= 1;
                    if pending[d] == 0 {
                        next.push(d);
                    }
                }
            }
            next.sort_unstable();
            placed += current.len();
            waves.push(current);
            current = next;
        }
        if placed < n {
            // Units never placed are on a cycle or downstream of one.
            let unplaced: Vec<usize> = (0..n).filter(|&i| wave_of[i] == usize::MAX).collect();
            return Err(find_cycles(&requires, &unplaced));
        }

        let mut position = vec![0; n];
        for (p, &u) in waves.iter().flatten().enumerate() {
            position[u] = p;
        }
        Ok(Graph {
            requires,
            dependents,
            waves,
            wave_of,
            position,
        })
    }

    pub fn len(&self) -> usize {
        self.wave_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wave_of.is_empty()
    }

    /// The number of distinct `requires` edges.
    pub fn edge_count(&self) -> usize {
        self.requires.targets.len()
    }

    /// What unit `i` requires directly, sorted.
    pub fn requires(&self, i: usize) -> &[usize] {
        self.requires.row(i)
    }

    /// What requires unit `i` directly, sorted.
    pub fn dependents(&self, i: usize) -> &[usize] {
        self.dependents.row(i)
    }

    /// The start waves: wave 0 holds units that require nothing, wave k units whose highest
    /// requirement sits in wave k - 1. Each wave is sorted.
    pub fn waves(&self) -> &[Vec<usize>] {
        &self.waves
    }

    pub fn wave_of(&self, i: usize) -> usize {
        self.wave_of[i]
    }

    /// Every unit, requirements before dependents: the waves in order.
    pub fn start_order(&self) -> Vec<usize> {
        self.waves.iter().flatten().copied().collect()
    }

    /// The reverse of [`Graph::start_order`]: dependents stop before what they require.
    pub fn stop_order(&self) -> Vec<usize> {
        let mut order = self.start_order();
        order.reverse();
        order
    }

    /// Every unit that requires `i`, directly or not, excluding `i`, in start order: what
    /// restarts after `i` restarts.
    pub fn transitive_dependents(&self, i: usize) -> Vec<usize> {
        self.closure(i, &self.dependents)
    }

    /// Every unit `i` requires, directly or not, excluding `i`, in start order.
    pub fn transitive_requirements(&self, i: usize) -> Vec<usize> {
        self.closure(i, &self.requires)
    }

    fn closure(&self, i: usize, edges: &Adjacency) -> Vec<usize> {
        // A bitset: callers may ask for the closure of every unit, and zeroing n bits per call
        // is 64 times cheaper than zeroing n bools.
        let mut seen = vec![0u64; self.len().div_ceil(64)];
        let mut mark = |v: usize| {
            let (word, bit) = (v / 64, 1u64 << (v % 64));
            let fresh = seen[word] & bit == 0;
            seen[word] |= bit;
            fresh
        };
        mark(i);
        // `out` doubles as the breadth-first queue.
        let mut out = Vec::new();
        let mut head = 0;
        let mut v = i;
        loop {
            for &w in edges.row(v) {
                if mark(w) {
                    out.push(w);
                }
            }
            match out.get(head) {
                Some(&next) => v = next,
                None => break,
            }
            head += 1;
        }
        out.sort_unstable_by_key(|&u| self.position[u]);
        out
    }
}

/// The reverse of `forward`, given each node's in-degree. A counting sort that visits sources
/// in increasing order, so every reverse row comes out sorted without sorting it.
fn reverse(forward: &Adjacency, indegree: &[usize]) -> Adjacency {
    let n = indegree.len();
    let mut start = Vec::with_capacity(n + 1);
    start.push(0);
    for &d in indegree {
        start.push(start.last().copied().unwrap_or(0) + d);
    }
    let mut fill = start[..n].to_vec();
    let mut targets = vec![0; forward.targets.len()];
    for i in 0..n {
        for &j in forward.row(i) {
            targets[fill[j]] = i;
            fill[j] += 1;
        }
    }
    Adjacency { start, targets }
}

/// Every elementary cycle among `candidates` (which must include every node on a cycle), up
/// to [`MAX_CYCLES_REPORTED`].
///
/// Johnson's algorithm: take the strongly connected component with the smallest node `s`,
/// list the cycles through `s` inside it, remove `s`, split what remains into components again,
/// and repeat. Taking components by their smallest node, and following edges in sorted order,
/// yields the cycles already sorted, each rotated to start at its smallest node and found once.
/// The time between two reported cycles is O(n + e), so the cap bounds the whole search.
fn find_cycles(edges: &Adjacency, candidates: &[usize]) -> Cycles {
    let mut s = Search::new(edges);
    let mut heap = BinaryHeap::new();
    let stamp = s.stamp(candidates);
    for comp in s.components(candidates, stamp) {
        s.push_if_cyclic(&mut heap, comp);
    }

    let mut cycles = Vec::new();
    while let Some(Reverse((first, comp))) = heap.pop() {
        let stamp = s.stamp(&comp);
        if s.circuits(first, &comp, stamp, &mut cycles) {
            cycles.truncate(MAX_CYCLES_REPORTED);
            return Cycles {
                cycles,
                truncated: true,
            };
        }
        let rest: Vec<usize> = comp.into_iter().filter(|&v| v != first).collect();
        let stamp = s.stamp(&rest);
        for sub in s.components(&rest, stamp) {
            s.push_if_cyclic(&mut heap, sub);
        }
    }
    Cycles {
        cycles,
        truncated: false,
    }
}

const UNVISITED: usize = usize::MAX;

/// Scratch arrays for [`find_cycles`], sized for the whole graph once and reset only over the
/// nodes each step touches, so repeated steps on small components stay cheap.
struct Search<'a> {
    edges: &'a Adjacency,
    /// Nodes of the subgraph being searched carry the current stamp.
    member: Vec<u32>,
    current: u32,
    // Tarjan's strongly connected components.
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    // Johnson's circuit search.
    blocked: Vec<bool>,
    /// `unblock_with[w]`: nodes to unblock once `w` is unblocked (Johnson's B lists).
    unblock_with: Vec<Vec<usize>>,
}

impl<'a> Search<'a> {
    fn new(edges: &'a Adjacency) -> Self {
        let n = edges.start.len() - 1;
        Search {
            edges,
            member: vec![0; n],
            current: 0,
            index: vec![UNVISITED; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            blocked: vec![false; n],
            unblock_with: vec![Vec::new(); n],
        }
    }

    /// Makes `nodes` the subgraph under search and returns its stamp.
    fn stamp(&mut self, nodes: &[usize]) -> u32 {
        self.current += 1;
        for &v in nodes {
            self.member[v] = self.current;
        }
        self.current
    }

    /// Queues a component for the circuit search if it holds a cycle: two or more nodes, or
    /// one node that requires itself.
    fn push_if_cyclic(
        &self,
        heap: &mut BinaryHeap<Reverse<(usize, Vec<usize>)>>,
        comp: Vec<usize>,
    ) {
        let Some(&first) = comp.iter().min() else {
            return;
        };
        if comp.len() > 1 || self.edges.row(first).binary_search(&first).is_ok() {
            // Components are disjoint, so no two queued ones share a smallest node.
            heap.push(Reverse((first, comp)));
        }
    }

    /// Tarjan's strongly connected components of the subgraph `nodes` (stamped `stamp`),
    /// iterative so that long chains cannot overflow the stack.
    fn components(&mut self, nodes: &[usize], stamp: u32) -> Vec<Vec<usize>> {
        for &v in nodes {
            self.index[v] = UNVISITED;
            self.on_stack[v] = false;
        }
        let mut comps = Vec::new();
        let mut counter = 0;
        let mut stack = Vec::new();
        // (node, position of its next edge in `edges.targets`)
        let mut calls: Vec<(usize, usize)> = Vec::new();
        for &root in nodes {
            if self.index[root] != UNVISITED {
                continue;
            }
            self.index[root] = counter;
            self.low[root] = counter;
            counter += 1;
            stack.push(root);
            self.on_stack[root] = true;
            calls.push((root, self.edges.start[root]));
            while let Some(&mut (v, ref mut next)) = calls.last_mut() {
                if *next < self.edges.start[v + 1] {
                    let w = self.edges.targets[*next];
                    *next += 1;
                    if self.member[w] != stamp {
                        continue;
                    }
                    if self.index[w] == UNVISITED {
                        self.index[w] = counter;
                        self.low[w] = counter;
                        counter += 1;
                        stack.push(w);
                        self.on_stack[w] = true;
                        calls.push((w, self.edges.start[w]));
                    } else if self.on_stack[w] {
                        self.low[v] = self.low[v].min(self.index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    self.low[parent] = self.low[parent].min(self.low[v]);
                }
                if self.low[v] == self.index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        self.on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comps.push(comp);
                }
            }
        }
        comps
    }

    /// Johnson's circuit search: appends every elementary cycle through `first`, the smallest
    /// node of the strongly connected component `comp` (stamped `stamp`), in lexicographic
    /// order. Returns true, early, once more than [`MAX_CYCLES_REPORTED`] cycles are known.
    fn circuits(&mut self, first: usize, comp: &[usize], stamp: u32, out: &mut Vec<Cycle>) -> bool {
        for &v in comp {
            self.blocked[v] = false;
            self.unblock_with[v].clear();
        }
        let mut path = vec![first];
        self.blocked[first] = true;
        // (node, position of its next edge, whether a cycle was found below it)
        let mut calls = vec![(first, self.edges.start[first], false)];
        while let Some(&mut (v, ref mut next, ref mut found)) = calls.last_mut() {
            if *next < self.edges.start[v + 1] {
                let w = self.edges.targets[*next];
                *next += 1;
                if self.member[w] != stamp {
                    continue;
                }
                if w == first {
                    *found = true;
                    out.push(Cycle(path.clone()));
                    if out.len() > MAX_CYCLES_REPORTED {
                        return true;
                    }
                } else if !self.blocked[w] {
                    self.blocked[w] = true;
                    path.push(w);
                    calls.push((w, self.edges.start[w], false));
                }
                continue;
            }
            let found = *found;
            calls.pop();
            path.pop();
            if found {
                self.unblock(v);
            } else {
                // v stays blocked until one of its successors is unblocked: until then no new
                // path through v can reach `first`.
                for &w in self.edges.row(v) {
                    if self.member[w] == stamp && !self.unblock_with[w].contains(&v) {
                        self.unblock_with[w].push(v);
                    }
                }
            }
            if let Some(parent) = calls.last_mut() {
                parent.2 |= found;
            }
        }
        false
    }

    fn unblock(&mut self, v: usize) {
        let mut work = vec![v];
        while let Some(u) = work.pop() {
            if self.blocked[u] {
                self.blocked[u] = false;
                work.append(&mut self.unblock_with[u]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(edges: &[&[usize]]) -> Result<Graph, Cycles> {
        Graph::compile(edges.iter().map(|r| r.to_vec()).collect())
    }

    fn cycles(edges: &[&[usize]]) -> Cycles {
        compile(edges).expect_err("the graph has a cycle")
    }

    fn cycle(nodes: &[usize]) -> Cycle {
        Cycle(nodes.to_vec())
    }

    /// 0 requires 1 and 2, which both require 3.
    const DIAMOND: &[&[usize]] = &[&[1, 2], &[3], &[3], &[]];

    #[test]
    fn empty_graph_compiles() {
        let g = Graph::compile(Vec::new()).unwrap();
        assert!(g.is_empty());
        assert_eq!(g.len(), 0);
        assert!(g.waves().is_empty());
        assert!(g.start_order().is_empty());
        assert!(g.stop_order().is_empty());
    }

    #[test]
    fn duplicate_edges_are_merged() {
        let g = compile(&[&[2, 1, 2, 1], &[2, 2], &[]]).unwrap();
        assert_eq!(g.requires(0), &[1, 2]);
        assert_eq!(g.requires(1), &[2]);
        assert_eq!(g.dependents(2), &[0, 1]);
        assert_eq!(g.dependents(1), &[0]);
        assert_eq!(g.edge_count(), 3);
    }

    #[test]
    fn diamond_waves_and_orders() {
        let g = compile(DIAMOND).unwrap();
        assert_eq!(g.waves(), &[vec![3], vec![1, 2], vec![0]]);
        assert_eq!(
            (0..4).map(|i| g.wave_of(i)).collect::<Vec<_>>(),
            [2, 1, 1, 0]
        );
        assert_eq!(g.start_order(), [3, 1, 2, 0]);
        assert_eq!(g.stop_order(), [0, 2, 1, 3]);
        assert_eq!(g.dependents(3), &[1, 2]);
    }

    #[test]
    fn diamond_closures() {
        let g = compile(DIAMOND).unwrap();
        assert_eq!(g.transitive_dependents(3), [1, 2, 0]);
        assert_eq!(g.transitive_dependents(1), [0]);
        assert!(g.transitive_dependents(0).is_empty());
        assert_eq!(g.transitive_requirements(0), [3, 1, 2]);
        assert_eq!(g.transitive_requirements(2), [3]);
        assert!(g.transitive_requirements(3).is_empty());
    }

    #[test]
    fn wave_is_one_more_than_the_highest_requirement() {
        // 0 requires 1 (wave 1) and 3 (wave 0): it waits for the later one.
        let g = compile(&[&[1, 3], &[2], &[], &[]]).unwrap();
        assert_eq!(g.waves(), &[vec![2, 3], vec![1], vec![0]]);
    }

    #[test]
    fn stop_order_stops_dependents_first() {
        let g = compile(&[&[], &[0], &[0, 1], &[]]).unwrap();
        assert_eq!(g.start_order(), [0, 3, 1, 2]);
        assert_eq!(g.stop_order(), [2, 1, 3, 0]);
    }

    #[test]
    fn long_chain_is_one_wave_per_unit() {
        // Unit i requires i + 1; iterative traversals must not overflow on this.
        let n = 10_000;
        let requires = (0..n)
            .map(|i| if i + 1 < n { vec![i + 1] } else { vec![] })
            .collect();
        let g = Graph::compile(requires).unwrap();
        assert_eq!(g.waves().len(), n);
        assert_eq!(g.wave_of(0), n - 1);
        assert_eq!(g.wave_of(n - 1), 0);
        assert_eq!(g.start_order(), (0..n).rev().collect::<Vec<_>>());
        assert_eq!(
            g.transitive_dependents(n - 1),
            (0..n - 1).rev().collect::<Vec<_>>()
        );
        assert_eq!(
            g.transitive_requirements(0),
            (1..n).rev().collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_cycle() {
        // 2 -> 0 -> 1 -> 2, plus 3 which only depends on the cycle and is not on it.
        let c = cycles(&[&[1], &[2], &[0], &[2]]);
        assert_eq!(c.cycles, [cycle(&[0, 1, 2])]);
        assert!(!c.truncated);
        assert_eq!(c.cycles[0].to_string(), "0 -> 1 -> 2 -> 0");
    }

    #[test]
    fn cycle_is_rotated_to_its_smallest_node() {
        // 3 requires 1, 1 requires 2, 2 requires 3.
        let c = cycles(&[&[], &[2], &[3], &[1]]);
        assert_eq!(c.cycles, [cycle(&[1, 2, 3])]);
    }

    #[test]
    fn several_disjoint_cycles() {
        // 0 <-> 1, 2 -> 3 -> 4 -> 2, and 5 requires 6 and a member of each cycle.
        let c = cycles(&[&[1], &[0], &[3], &[4], &[2], &[0, 2, 6], &[]]);
        assert_eq!(c.cycles, [cycle(&[0, 1]), cycle(&[2, 3, 4])]);
        assert!(!c.truncated);
    }

    #[test]
    fn two_cycles_sharing_a_node() {
        // 0 <-> 1 and 0 -> 2 -> 0: two elementary cycles; the figure eight is not one.
        let c = cycles(&[&[1, 2], &[0], &[0]]);
        assert_eq!(c.cycles, [cycle(&[0, 1]), cycle(&[0, 2])]);
    }

    #[test]
    fn overlapping_cycles_in_one_component() {
        // 0 -> 1 -> 2 -> 0 and 1 -> 3 -> 1 and 2 -> 1.
        let c = cycles(&[&[1], &[2, 3], &[0, 1], &[1]]);
        assert_eq!(
            c.cycles,
            [cycle(&[0, 1, 2]), cycle(&[1, 2]), cycle(&[1, 3])]
        );
    }

    #[test]
    fn self_loop_is_a_one_element_cycle() {
        let c = cycles(&[&[], &[1, 0], &[1]]);
        assert_eq!(c.cycles, [cycle(&[1])]);
        assert_eq!(c.cycles[0].to_string(), "1 -> 1");
    }

    #[test]
    fn long_cycle_of_a_thousand_nodes() {
        let n = 1_000;
        let requires = (0..n).map(|i| vec![(i + 1) % n]).collect();
        let c = Graph::compile(requires).unwrap_err();
        assert_eq!(c.cycles, [Cycle((0..n).collect())]);
        assert!(!c.truncated);
    }

    #[test]
    fn cycles_through_a_ring_are_found_in_reverse_index_order_too() {
        // Unit i requires i - 1: the cycle read from its smallest node runs backwards.
        let n = 10_000;
        let requires = (0..n).map(|i| vec![(i + n - 1) % n]).collect();
        let c = Graph::compile(requires).unwrap_err();
        let expected: Vec<usize> = std::iter::once(0).chain((1..n).rev()).collect();
        assert_eq!(c.cycles, [Cycle(expected)]);
    }

    #[test]
    fn report_is_capped() {
        // Every unit requires every other: far more than the cap of elementary cycles.
        let n = 8;
        let requires = (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
        let c = Graph::compile(requires).unwrap_err();
        assert!(c.truncated);
        assert_eq!(c.cycles.len(), MAX_CYCLES_REPORTED);
        assert!(c.cycles.windows(2).all(|w| w[0] < w[1]));
        assert!(c.cycles.iter().all(|c| c.0[0] == 0));
        assert_eq!(c.cycles[0], cycle(&[0, 1]));
        assert_eq!(c.cycles[1], cycle(&[0, 1, 2]));
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        // A hub 0 in a 2-cycle with each of 100 spokes: exactly 100 cycles.
        let spokes = MAX_CYCLES_REPORTED;
        let mut requires = vec![(1..=spokes).collect::<Vec<_>>()];
        requires.extend((1..=spokes).map(|_| vec![0]));
        let c = Graph::compile(requires).unwrap_err();
        assert!(!c.truncated);
        assert_eq!(c.cycles.len(), spokes);
        assert_eq!(c.cycles[spokes - 1], cycle(&[0, spokes]));
    }

    #[test]
    #[should_panic(expected = "requires unit 5")]
    fn out_of_range_index_panics() {
        let _ = compile(&[&[5], &[]]);
    }
}
