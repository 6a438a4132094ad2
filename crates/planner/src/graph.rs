//! The `needs` graph of a pipeline, index-based.
//!
//! Action names are resolved to indices once (an action's index is its
//! position in [`Pipeline::actions`], i.e. file order); after that every walk
//! is over integer arrays, iterative (explicit stacks, never recursion, so a
//! 100,000-action chain is as safe as a 3-action one) and linear in the size
//! of the graph, apart from the `O(log n)` priority queue that keeps the
//! topological order deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, RandomState};

use warden_pipeline::{Action, Pipeline, RUN_ALL_COMMAND};

use crate::PlanError;

/// Marks a `needs` entry that names no action of the pipeline.
pub(crate) const UNKNOWN: u32 = u32::MAX;

/// The `needs` graph of one pipeline: adjacency by index, built once.
///
/// Indices are positions in [`Pipeline::actions`]. Build it once and use it
/// for several questions (order, closure, plans) about the same pipeline.
#[derive(Debug, Clone)]
pub struct Graph<'p> {
    pipeline: &'p Pipeline,
    /// `needs[offsets[i]..offsets[i + 1]]` are the needs of action `i`.
    offsets: Vec<u32>,
    /// Need indices, in the order written; [`UNKNOWN`] for an unknown name.
    needs: Vec<u32>,
}

impl<'p> Graph<'p> {
    /// Resolves every `needs` entry of `pipeline` to an index.
    ///
    /// Unknown names are not an error here: they become one only when a walk
    /// reaches them, so an unrelated broken action cannot block a plan.
    ///
    /// # Panics
    ///
    /// If the pipeline has `u32::MAX` actions or needs entries or more.
    pub fn new(pipeline: &'p Pipeline) -> Self {
        let total: usize = pipeline.actions.values().map(|a| a.needs.len()).sum();
        assert!(
            pipeline.actions.len() < UNKNOWN as usize && total < UNKNOWN as usize,
            "pipeline too large to plan"
        );
        let names = NameIndex::new(pipeline.actions.keys().map(String::as_str));
        let mut offsets = Vec::with_capacity(pipeline.actions.len() + 1);
        let mut needs = Vec::with_capacity(total);
        offsets.push(0);
        for action in pipeline.actions.values() {
            needs.extend(
                action
                    .needs
                    .iter()
                    .map(|need| names.get(need).unwrap_or(UNKNOWN)),
            );
            offsets.push(needs.len() as u32);
        }
        Graph {
            pipeline,
            offsets,
            needs,
        }
    }

    /// The pipeline this graph was built from.
    pub fn pipeline(&self) -> &'p Pipeline {
        self.pipeline
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.pipeline.actions.len()
    }

    /// Whether the pipeline has no action.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of action `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn name(&self, index: usize) -> &'p str {
        self.entry(index).0
    }

    /// Action `index`.
    ///
    /// # Panics
    ///
    /// If `index` is out of range.
    pub fn action(&self, index: usize) -> &'p Action {
        self.entry(index).1
    }

    fn entry(&self, index: usize) -> (&'p str, &'p Action) {
        let pipeline: &'p Pipeline = self.pipeline;
        let (name, action) = pipeline
            .actions
            .get_index(index)
            .expect("action index in range");
        (name.as_str(), action)
    }

    /// The index of the action called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.pipeline.actions.get_index_of(name)
    }

    /// The needs of action `index`, in the order written: `None` for a name
    /// that is not an action of the pipeline.
    pub fn needs(&self, index: usize) -> impl ExactSizeIterator<Item = Option<usize>> + '_ {
        self.raw_needs(index)
            .iter()
            .map(|&n| (n != UNKNOWN).then_some(n as usize))
    }

    pub(crate) fn raw_needs(&self, index: usize) -> &[u32] {
        &self.needs[self.offsets[index] as usize..self.offsets[index + 1] as usize]
    }

    /// The actions `run_all` stands for: all, in file order, except an action
    /// that is itself called `run_all`.
    pub fn run_all_actions(&self) -> impl Iterator<Item = usize> + '_ {
        self.pipeline
            .actions
            .keys()
            .enumerate()
            .filter(|(_, name)| *name != RUN_ALL_COMMAND)
            .map(|(i, _)| i)
    }

    /// Action names for error messages: file order, without `run_all`.
    pub(crate) fn valid_actions(&self) -> Vec<String> {
        self.run_all_actions()
            .map(|i| self.name(i).to_owned())
            .collect()
    }

    /// Resolves requested names to indices. `run_all` stands for
    /// [`Graph::run_all_actions`]; any other name must be an action.
    /// Returns the indices in request order (duplicates kept) and whether
    /// `run_all` was among them.
    pub(crate) fn resolve<S: AsRef<str>>(
        &self,
        names: &[S],
    ) -> Result<(Vec<u32>, bool), PlanError> {
        let mut indices = Vec::with_capacity(names.len());
        let mut run_all = false;
        for name in names {
            let name = name.as_ref();
            if name == RUN_ALL_COMMAND {
                run_all = true;
            } else if let Some(i) = self.index_of(name) {
                indices.push(i as u32);
            } else {
                return Err(PlanError::UnknownAction {
                    action: name.to_owned(),
                    valid_actions: self.valid_actions(),
                });
            }
        }
        Ok((indices, run_all))
    }

    pub(crate) fn unknown_need(&self, action: usize, position: usize) -> PlanError {
        PlanError::UnknownNeed {
            action: self.name(action).to_owned(),
            need: self.action(action).needs[position].clone(),
        }
    }

    /// Every action, dependencies before the actions that need them.
    ///
    /// Deterministic: among the actions whose needs are all placed, the one
    /// earliest in the file comes next (so a pipeline written in dependency
    /// order comes back in file order).
    ///
    /// # Errors
    ///
    /// [`PlanError::UnknownNeed`] or [`PlanError::Cycle`].
    pub fn topological_order(&self) -> Result<Vec<usize>, PlanError> {
        let all = vec![true; self.len()];
        self.order_members(&all, self.len())
    }

    /// The actions `roots` need, directly or not, with the roots themselves,
    /// in [`Graph::topological_order`]. `run_all` among `roots` stands for
    /// every action.
    ///
    /// # Errors
    ///
    /// [`PlanError::UnknownAction`] for a root that is not an action,
    /// [`PlanError::UnknownNeed`] or [`PlanError::Cycle`].
    pub fn closure<S: AsRef<str>>(&self, roots: &[S]) -> Result<Vec<usize>, PlanError> {
        let (indices, run_all) = self.resolve(roots)?;
        let mut member = vec![false; self.len()];
        let mut count = 0;
        let mut stack: Vec<u32> = Vec::new();
        let starts: Box<dyn Iterator<Item = u32>> = if run_all {
            Box::new(self.run_all_actions().map(|i| i as u32))
        } else {
            Box::new(indices.into_iter())
        };
        for root in starts {
            if member[root as usize] {
                continue;
            }
            member[root as usize] = true;
            count += 1;
            stack.push(root);
            while let Some(v) = stack.pop() {
                for (position, &need) in self.raw_needs(v as usize).iter().enumerate() {
                    if need == UNKNOWN {
                        return Err(self.unknown_need(v as usize, position));
                    }
                    if !member[need as usize] {
                        member[need as usize] = true;
                        count += 1;
                        stack.push(need);
                    }
                }
            }
        }
        self.order_members(&member, count)
    }

    /// Kahn's algorithm over the actions marked in `member` (`count` of
    /// them), with a min-heap of indices for file order among ready actions.
    fn order_members(&self, member: &[bool], count: usize) -> Result<Vec<usize>, PlanError> {
        let n = self.len();
        // Unplaced needs per action, and who needs each action (CSR).
        let mut waiting = vec![0u32; n];
        let mut dependents_start = vec![0u32; n + 1];
        for v in (0..n).filter(|&v| member[v]) {
            for (position, &need) in self.raw_needs(v).iter().enumerate() {
                if need == UNKNOWN {
                    return Err(self.unknown_need(v, position));
                }
                waiting[v] += 1;
                dependents_start[need as usize + 1] += 1;
            }
        }
        for i in 0..n {
            dependents_start[i + 1] += dependents_start[i];
        }
        let mut fill = dependents_start.clone();
        let mut dependents = vec![0u32; dependents_start[n] as usize];
        for v in (0..n).filter(|&v| member[v]) {
            for &need in self.raw_needs(v) {
                let slot = &mut fill[need as usize];
                dependents[*slot as usize] = v as u32;
                *slot += 1;
            }
        }

        let mut ready: BinaryHeap<Reverse<u32>> = (0..n)
            .filter(|&v| member[v] && waiting[v] == 0)
            .map(|v| Reverse(v as u32))
            .collect();
        let mut order = Vec::with_capacity(count);
        while let Some(Reverse(v)) = ready.pop() {
            order.push(v as usize);
            let range =
                dependents_start[v as usize] as usize..dependents_start[v as usize + 1] as usize;
            for &d in &dependents[range] {
                waiting[d as usize] -= 1;
                if waiting[d as usize] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() == count {
            return Ok(order);
        }
        // What is left waits on a cycle; walk `needs` inside it to find one.
        let left: Vec<bool> = (0..n).map(|v| member[v] && waiting[v] > 0).collect();
        Err(self.find_cycle(&left))
    }

    /// A cycle among the actions marked in `left`, every one of which needs
    /// at least one other marked action (so a walk along `needs` must close
    /// a loop). Iterative depth-first search from the first marked action.
    fn find_cycle(&self, left: &[bool]) -> PlanError {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let mut colour = vec![WHITE; self.len()];
        for start in (0..self.len()).filter(|&v| left[v]) {
            if colour[start] != WHITE {
                continue;
            }
            colour[start] = GREY;
            let mut stack: Vec<(u32, u32)> = vec![(start as u32, 0)];
            while let Some(&mut (v, ref mut next)) = stack.last_mut() {
                let needs = self.raw_needs(v as usize);
                if let Some(&need) = needs.get(*next as usize) {
                    *next += 1;
                    if !left[need as usize] {
                        continue;
                    }
                    match colour[need as usize] {
                        WHITE => {
                            colour[need as usize] = GREY;
                            stack.push((need, 0));
                        }
                        GREY => {
                            let path = stack.iter().map(|&(node, _)| node);
                            return self.cycle_error(path, need);
                        }
                        _ => {}
                    }
                } else {
                    colour[v as usize] = BLACK;
                    stack.pop();
                }
            }
        }
        unreachable!("actions left after a topological sort always contain a cycle")
    }

    /// The cycle closed by an edge to `back` from the last node of `path`
    /// (the current depth-first path, which contains `back`).
    pub(crate) fn cycle_error(
        &self,
        path: impl DoubleEndedIterator<Item = u32> + Clone,
        back: u32,
    ) -> PlanError {
        let from = path.clone().rev().position(|v| v == back).unwrap_or(0);
        let len = path.clone().count();
        let path = path
            .skip(len - 1 - from)
            .chain(std::iter::once(back))
            .map(|v| self.name(v as usize).to_owned())
            .collect();
        PlanError::Cycle { path }
    }
}

/// Every action of `pipeline`, dependencies first; see
/// [`Graph::topological_order`].
///
/// # Errors
///
/// [`PlanError::UnknownNeed`] or [`PlanError::Cycle`].
pub fn topological_order(pipeline: &Pipeline) -> Result<Vec<&str>, PlanError> {
    let graph = Graph::new(pipeline);
    let order = graph.topological_order()?;
    Ok(order.into_iter().map(|i| graph.name(i)).collect())
}

/// The actions that `actions` need, directly or not, with themselves,
/// dependencies first; see [`Graph::closure`].
///
/// # Errors
///
/// [`PlanError::UnknownAction`], [`PlanError::UnknownNeed`] or
/// [`PlanError::Cycle`].
pub fn dependency_closure<'p, S: AsRef<str>>(
    pipeline: &'p Pipeline,
    actions: &[S],
) -> Result<Vec<&'p str>, PlanError> {
    let graph = Graph::new(pipeline);
    let order = graph.closure(actions)?;
    Ok(order.into_iter().map(|i| graph.name(i)).collect())
}

/// Name → index, compact: the names packed in one buffer and an
/// open-addressing table of `(hash, index)`, so resolving every `needs` entry
/// of a large pipeline stays in cache instead of chasing each `String` of the
/// pipeline's map. The hash is seeded per index from std's `RandomState`,
/// so a project cannot be written to collide on purpose.
struct NameIndex {
    seed: u64,
    packed: String,
    /// `packed[ends[i - 1]..ends[i]]` is name `i` (`ends[-1]` = 0).
    ends: Vec<u32>,
    /// `(hash >> 32) << 32 | index`, or `EMPTY`; length a power of two.
    table: Vec<u64>,
}

const EMPTY: u64 = u64::MAX;

impl NameIndex {
    fn new<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let n = names.len();
        let capacity = (n * 2).next_power_of_two().max(8);
        let mut index = NameIndex {
            seed: RandomState::new().hash_one(n) | 1,
            packed: String::new(),
            ends: Vec::with_capacity(n),
            table: vec![EMPTY; capacity],
        };
        for (i, name) in names.enumerate() {
            index.packed.push_str(name);
            index.ends.push(index.packed.len() as u32);
            let hash = index.hash(name);
            let mut slot = hash as usize & (capacity - 1);
            while index.table[slot] != EMPTY {
                slot = (slot + 1) & (capacity - 1);
            }
            index.table[slot] = (hash & !0xffff_ffff) | i as u64;
        }
        index
    }

    /// A seeded multiply-xorshift hash over 8-byte words, finished with a
    /// full avalanche (the table uses the low bits, the check the high ones).
    fn hash(&self, name: &str) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.seed ^ (name.len() as u64).wrapping_mul(K);
        let mut chunks = name.as_bytes().chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            h = (h ^ word).wrapping_mul(K).rotate_left(29) ^ self.seed;
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        h = (h ^ u64::from_le_bytes(last)).wrapping_mul(K);
        // murmur3's fmix64.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn name(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.packed[start..self.ends[i] as usize]
    }

    fn get(&self, name: &str) -> Option<u32> {
        let hash = self.hash(name);
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let entry = self.table[slot];
            if entry == EMPTY {
                return None;
            }
            let index = entry as u32;
            if entry >> 32 == hash >> 32 && self.name(index as usize) == name {
                return Some(index);
            }
            slot = (slot + 1) & mask;
        }
    }
}
