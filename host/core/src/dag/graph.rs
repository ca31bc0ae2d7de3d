//! The dependency graph: a topological order, or the cycles that prevent one.
//!
//! Tasks are numbered in file order, and the order is Kahn's algorithm taking the lowest number
//! first, so a DAG's task list reads like its file wherever the dependencies allow. When the graph
//! has cycles, each strongly connected component (petgraph's Tarjan) yields one cycle to report,
//! walked from its first task in file order, so the message is stable from run to run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

/// Tasks `0..count` and their dependencies; each edge carries a caller's label (where it was
/// declared). Self-loops and duplicate edges must be filtered out by the caller.
pub(super) struct DepGraph<L> {
    graph: DiGraph<(), L, u32>,
}

/// A cycle: tasks in dependency order, the first repeated at the end is implied; `closing` is the
/// label of the edge from the last task back to the first.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Cycle<L> {
    pub(super) tasks: Vec<usize>,
    pub(super) closing: L,
}

impl<L: Clone> DepGraph<L> {
    pub(super) fn new(count: usize) -> Self {
        let mut graph = DiGraph::with_capacity(count, count);
        for _ in 0..count {
            graph.add_node(());
        }
        DepGraph { graph }
    }

    /// Adds "`upstream` runs before `downstream`".
    pub(super) fn add(&mut self, upstream: usize, downstream: usize, label: L) {
        self.graph.add_edge(NodeIndex::new(upstream), NodeIndex::new(downstream), label);
    }

    /// A topological order, lowest task number first among ready tasks; or every cycle.
    pub(super) fn order(&self) -> Result<Vec<usize>, Vec<Cycle<L>>> {
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|node| self.graph.neighbors_directed(node, Direction::Incoming).count())
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..indegree.len()).filter(|&task| indegree[task] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(Reverse(task)) = ready.pop() {
            order.push(task);
            for next in self.graph.neighbors(NodeIndex::new(task)) {
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.push(Reverse(next.index()));
                }
            }
        }
        if order.len() == indegree.len() {
            Ok(order)
        } else {
            Err(self.cycles())
        }
    }

    /// One cycle per strongly connected component of more than one task, in order of first task.
    fn cycles(&self) -> Vec<Cycle<L>> {
        let mut cycles: Vec<_> = tarjan_scc(&self.graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .filter_map(|component| self.cycle_in(&component))
            .collect();
        cycles.sort_by_key(|cycle| cycle.tasks.first().copied());
        cycles
    }

    /// The shortest cycle through the component's first task (breadth-first, lowest numbers first).
    fn cycle_in(&self, component: &[NodeIndex<u32>]) -> Option<Cycle<L>> {
        let start = *component.iter().min()?;
        let mut came_from = vec![None; self.graph.node_count()];
        let mut queue = VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for next in self.sorted_successors(node) {
                if next == start {
                    return self.close(start, node, &came_from);
                }
                if component.contains(&next) && came_from[next.index()].is_none() {
                    came_from[next.index()] = Some(node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    fn sorted_successors(&self, node: NodeIndex<u32>) -> Vec<NodeIndex<u32>> {
        let mut next: Vec<_> = self.graph.neighbors(node).collect();
        next.sort();
        next
    }

    /// The cycle `start -> … -> last -> start` from the breadth-first search's back-pointers.
    fn close(
        &self,
        start: NodeIndex<u32>,
        last: NodeIndex<u32>,
        came_from: &[Option<NodeIndex<u32>>],
    ) -> Option<Cycle<L>> {
        let mut tasks = vec![last.index()];
        let mut node = last;
        while node != start {
            match came_from[node.index()] {
                Some(previous) => node = previous,
                None => break,
            }
            tasks.push(node.index());
        }
        tasks.reverse();
        let closing = self.graph[self.graph.find_edge(last, start)?].clone();
        Some(Cycle { tasks, closing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(count: usize, edges: &[(usize, usize)]) -> DepGraph<(usize, usize)> {
        let mut graph = DepGraph::new(count);
        for &(up, down) in edges {
            graph.add(up, down, (up, down));
        }
        graph
    }

    #[test]
    fn ties_keep_file_order() {
        assert_eq!(graph(3, &[]).order(), Ok(vec![0, 1, 2]));
        // 2 -> 0: 1 is ready first, then 2, then 0.
        assert_eq!(graph(3, &[(2, 0)]).order(), Ok(vec![1, 2, 0]));
        assert_eq!(graph(4, &[(3, 0), (1, 3)]).order(), Ok(vec![1, 2, 3, 0]));
    }

    #[test]
    fn upstream_before_downstream() {
        let order = graph(4, &[(3, 2), (2, 1), (1, 0)]).order();
        assert_eq!(order, Ok(vec![3, 2, 1, 0]));
    }

    #[test]
    fn a_cycle_is_walked_from_its_first_task() {
        let cycles = graph(4, &[(0, 1), (2, 0), (1, 2), (2, 3)]).order().expect_err("a cycle");
        assert_eq!(cycles, vec![Cycle { tasks: vec![0, 1, 2], closing: (2, 0) }]);
    }

    #[test]
    fn every_cycle_is_reported() {
        let cycles = graph(5, &[(3, 4), (4, 3), (0, 1), (1, 0), (1, 2)]).order().expect_err("cycles");
        let tasks: Vec<_> = cycles.iter().map(|cycle| cycle.tasks.clone()).collect();
        assert_eq!(tasks, vec![vec![0, 1], vec![3, 4]]);
    }
}
