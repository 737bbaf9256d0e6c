//! The item trie (ILREC.md section 2): every item's token sequence followed by EOS, inserted
//! into a prefix trie. Constrained beam search asks it which tokens may follow a prefix; the
//! ILRec objective asks it for the candidate tokens at a ground-truth prefix and for the items
//! below each candidate.
//!
//! Layout (flat arrays, no per-node allocation; memory O(total tokens)):
//! - `nodes[id]` holds a range into `children` and a range into `items_dfs`;
//! - `children` holds `(token, child node)` pairs, each node's pairs contiguous and sorted by
//!   token, so `child()` is a binary search;
//! - `items_dfs` holds every item id once, in lexicographic order of the items' sequences
//!   (= depth-first order of the trie), which makes the items below any node one contiguous
//!   slice.
//!
//! Because every sequence ends with EOS and EOS occurs nowhere else, no item's sequence is a
//! prefix of another's (a title that is a prefix of another title ends at its own EOS leaf), and
//! every leaf holds exactly one item.

use crate::{Error, Result};
use std::collections::VecDeque;
use std::ops::Range;

/// Index of a node; the root is [`ItemTrie::root`].
pub type NodeId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    children_start: u32,
    children_len: u32,
    items_start: u32,
    items_len: u32,
}

impl Node {
    fn item_range(&self) -> Range<usize> {
        self.items_start as usize..(self.items_start + self.items_len) as usize
    }
    fn child_range(&self) -> Range<usize> {
        self.children_start as usize..(self.children_start + self.children_len) as usize
    }
}

#[derive(Clone)]
pub struct ItemTrie {
    eos: u32,
    nodes: Vec<Node>,
    children: Vec<(u32, NodeId)>,
    items_dfs: Vec<u32>,
    /// Item `i`'s sequence (tokens then EOS) is `seq_tokens[seq_offsets[i]..seq_offsets[i + 1]]`.
    seq_offsets: Vec<usize>,
    seq_tokens: Vec<u32>,
}

impl ItemTrie {
    /// Builds the trie of `item_seqs[i]` + `[eos]` for every item `i`. Errors: no items, an
    /// empty sequence, EOS inside a sequence, or two items with the same sequence (both named).
    pub fn build(item_seqs: &[Vec<u32>], eos: u32) -> Result<ItemTrie> {
        let (seq_offsets, seq_tokens) = concat_with_eos(item_seqs, eos)?;
        let seq = |i: u32| &seq_tokens[seq_offsets[i as usize]..seq_offsets[i as usize + 1]];
        // Lexicographic order of the sequences = DFS order of the trie (children by token).
        let mut items_dfs: Vec<u32> = (0..item_seqs.len() as u32).collect();
        items_dfs.sort_by(|&a, &b| seq(a).cmp(seq(b)).then(a.cmp(&b)));
        for pair in items_dfs.windows(2) {
            if seq(pair[0]) == seq(pair[1]) {
                let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
                return Err(Error::config(
                    format!("items {a} and {b} have the same token sequence {:?}", &item_seqs[a as usize]),
                    "every item needs a distinct sequence (resolve SID collisions; make duplicate titles distinct)",
                ));
            }
        }
        let (nodes, children) = build_nodes(&items_dfs, &seq);
        Ok(ItemTrie {
            eos,
            nodes,
            children,
            items_dfs,
            seq_offsets,
            seq_tokens,
        })
    }

    pub fn root(&self) -> NodeId {
        0
    }
    pub fn eos(&self) -> u32 {
        self.eos
    }
    pub fn num_items(&self) -> usize {
        self.seq_offsets.len() - 1
    }
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `(token, child)` pairs of `node`, sorted by token.
    pub fn children(&self, node: NodeId) -> &[(u32, NodeId)] {
        &self.children[self.nodes[node as usize].child_range()]
    }

    /// The child of `node` along `token`, if any.
    pub fn child(&self, node: NodeId, token: u32) -> Option<NodeId> {
        let kids = self.children(node);
        kids.binary_search_by_key(&token, |&(t, _)| t)
            .ok()
            .map(|i| kids[i].1)
    }

    /// The items below `node`, in DFS order (lexicographic order of their sequences).
    pub fn items(&self, node: NodeId) -> &[u32] {
        &self.items_dfs[self.nodes[node as usize].item_range()]
    }

    /// Where `items(node)` lies in [`Self::items_dfs`] (handy for prefix sums over DFS order).
    pub fn item_range(&self, node: NodeId) -> Range<usize> {
        self.nodes[node as usize].item_range()
    }

    /// All item ids in DFS order.
    pub fn items_dfs(&self) -> &[u32] {
        &self.items_dfs
    }

    pub fn is_leaf(&self, node: NodeId) -> bool {
        self.nodes[node as usize].children_len == 0
    }

    /// The item that ends at `node` (a leaf, reached through its EOS), or None.
    pub fn item_at_leaf(&self, node: NodeId) -> Option<u32> {
        if self.is_leaf(node) {
            self.items(node).first().copied()
        } else {
            None
        }
    }

    /// The node reached from the root by `prefix`, or None if no item starts with it.
    pub fn walk(&self, prefix: &[u32]) -> Option<NodeId> {
        prefix
            .iter()
            .try_fold(self.root(), |node, &token| self.child(node, token))
    }

    /// Tokens that may follow `prefix` (sorted); empty if the prefix is invalid or complete.
    pub fn allowed_next(&self, prefix: &[u32]) -> Vec<u32> {
        match self.walk(prefix) {
            Some(node) => self.children(node).iter().map(|&(t, _)| t).collect(),
            None => Vec::new(),
        }
    }

    /// Items whose sequence starts with `prefix` (DFS order); empty if none.
    pub fn items_below(&self, prefix: &[u32]) -> &[u32] {
        match self.walk(prefix) {
            Some(node) => self.items(node),
            None => &[],
        }
    }

    /// Item `item`'s token sequence, EOS included (the response ids of a training example).
    pub fn item_seq(&self, item: u32) -> &[u32] {
        &self.seq_tokens[self.seq_offsets[item as usize]..self.seq_offsets[item as usize + 1]]
    }
}

/// A summary: the arrays are far too long to print.
impl std::fmt::Debug for ItemTrie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemTrie")
            .field("items", &self.num_items())
            .field("nodes", &self.num_nodes())
            .field("tokens", &self.seq_tokens.len())
            .field("eos", &self.eos)
            .finish()
    }
}

/// Concatenates the sequences, each followed by EOS, checking them on the way.
fn concat_with_eos(item_seqs: &[Vec<u32>], eos: u32) -> Result<(Vec<usize>, Vec<u32>)> {
    let hint = "each item is a non-empty token sequence without EOS; EOS is appended by the trie";
    if item_seqs.is_empty() || item_seqs.len() > u32::MAX as usize - 1 {
        return Err(Error::config(
            format!("item trie: {} items", item_seqs.len()),
            hint,
        ));
    }
    let total: usize = item_seqs.iter().map(|s| s.len() + 1).sum();
    let mut offsets = Vec::with_capacity(item_seqs.len() + 1);
    let mut tokens = Vec::with_capacity(total);
    offsets.push(0);
    for (item, seq) in item_seqs.iter().enumerate() {
        if seq.is_empty() || seq.contains(&eos) {
            return Err(Error::config(
                format!("item {item} has the token sequence {seq:?} (EOS = {eos})"),
                hint,
            ));
        }
        tokens.extend_from_slice(seq);
        tokens.push(eos);
        offsets.push(tokens.len());
    }
    Ok((offsets, tokens))
}

/// Breadth-first construction over the sorted items: a node is a range of `items_dfs` sharing
/// a prefix of length `depth`; its children split that range by the token at `depth`.
fn build_nodes<'a>(
    items_dfs: &[u32],
    seq: &dyn Fn(u32) -> &'a [u32],
) -> (Vec<Node>, Vec<(u32, NodeId)>) {
    let leaf = |lo: usize, hi: usize| Node {
        children_start: 0,
        children_len: 0,
        items_start: lo as u32,
        items_len: (hi - lo) as u32,
    };
    let mut nodes = vec![leaf(0, items_dfs.len())];
    let mut children = Vec::new();
    // (node, depth) to expand; the node's item range is in `nodes`.
    let mut queue = VecDeque::from([(0 as NodeId, 0usize)]);
    while let Some((node, depth)) = queue.pop_front() {
        let range = nodes[node as usize].item_range();
        // A range of one item whose sequence is used up is a leaf (its EOS was the last token).
        if range.len() == 1 && seq(items_dfs[range.start]).len() == depth {
            continue;
        }
        let children_start = children.len() as u32;
        let mut lo = range.start;
        while lo < range.end {
            let token = seq(items_dfs[lo])[depth];
            let mut hi = lo + 1;
            while hi < range.end && seq(items_dfs[hi])[depth] == token {
                hi += 1;
            }
            let id = nodes.len() as NodeId;
            nodes.push(leaf(lo, hi));
            children.push((token, id));
            queue.push_back((id, depth + 1));
            lo = hi;
        }
        let n = &mut nodes[node as usize];
        n.children_start = children_start;
        n.children_len = children.len() as u32 - children_start;
    }
    (nodes, children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_trie_by_hand() {
        // items: 0 = [1,2], 1 = [1], 2 = [3], 3 = [1,2,4]; EOS = 0.
        let t = ItemTrie::build(&[vec![1, 2], vec![1], vec![3], vec![1, 2, 4]], 0).unwrap();
        assert_eq!(t.allowed_next(&[]), vec![1, 3]);
        assert_eq!(t.allowed_next(&[1]), vec![0, 2]); // item 1 ends here (EOS) or continues
        assert_eq!(t.allowed_next(&[1, 2]), vec![0, 4]);
        assert_eq!(t.allowed_next(&[1, 2, 0]), Vec::<u32>::new());
        assert_eq!(t.allowed_next(&[9]), Vec::<u32>::new());
        // DFS (lexicographic) order: [1,0] < [1,2,0] < [1,2,4,0] < [3,0].
        assert_eq!(t.items_below(&[]), &[1, 0, 3, 2]);
        assert_eq!(t.items_below(&[1]), &[1, 0, 3]);
        assert_eq!(t.items_below(&[1, 2]), &[0, 3]);
        assert_eq!(t.item_at_leaf(t.walk(&[1, 0]).unwrap()), Some(1));
        assert_eq!(t.item_at_leaf(t.walk(&[1]).unwrap()), None);
        assert_eq!(t.item_seq(3), &[1, 2, 4, 0]);
        // Nodes: root, 1, 3, 1-EOS, 1-2, 3-EOS, 1-2-EOS, 1-2-4, 1-2-4-EOS.
        assert_eq!(t.num_nodes(), 9);
    }

    #[test]
    fn bad_sequences_are_errors() {
        let e = ItemTrie::build(&[vec![5, 6], vec![7], vec![5, 6]], 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("items 0 and 2"), "{e}");
        assert!(ItemTrie::build(&[vec![5, 0]], 0).is_err());
        assert!(ItemTrie::build(&[vec![]], 0).is_err());
        assert!(ItemTrie::build(&[], 0).is_err());
    }
}
