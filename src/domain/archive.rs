//! An archived month: its manifest, and the Merkle arithmetic that ties the month's leaves to a
//! signed checkpoint without the rest of the tree (docs/verifiable-log.md, "Archives").
//!
//! The month's leaves are the log's leaves `first_seq - 1 .. last_seq` (leaf index = seq - 1).
//! The tree of the checkpoint's size N is tiled by perfect aligned subtrees: those left of the
//! month (`[0, first_seq - 1)`), those the month's leaves make, and those right of it
//! (`[last_seq, N)`). The manifest carries the left and right ones (`proof.left`,
//! `proof.right`: O(log N) hashes); an auditor recomputes the month's from the archive file,
//! merges the three and folds them into the root, which must be the checkpoint's.

use serde::{Deserialize, Serialize};

use super::evidence::b64;
use super::merkle::{node_hash, Hash, RightEdge};

/// What `archive` writes beside the files of a month: `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The partition's name suffix: `YYYY_MM`, or `legacy` (every row stored before V9).
    pub partition: String,
    /// Its seq range, both ends included.
    pub first_seq: i64,
    pub last_seq: i64,
    /// RFC 6962 root of the range's leaves as a tree of their own (the leaves of seq
    /// first_seq..=last_seq, in order).
    #[serde(with = "b64::hash")]
    pub range_root: Hash,
    /// One file per table, NDJSON compressed with zstd.
    pub files: Vec<ArchiveFile>,
    /// The signed checkpoint the range is tied to: the smallest whose tree holds it.
    pub checkpoint: ManifestCheckpoint,
    pub proof: RangeProof,
}

pub const FORMAT: &str = "ticket-audit-archive/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFile {
    pub table: String,
    /// Relative to the manifest's directory.
    pub file: String,
    pub rows: u64,
    /// SHA-256 of the file as written (compressed), hex.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCheckpoint {
    pub tree_size: u64,
    #[serde(with = "b64::hash")]
    pub root_hash: Hash,
    /// The signed note as the service signed it.
    pub note: String,
}

/// The perfect subtrees of the checkpoint's tree on either side of the range, left to right
/// (their positions follow from first_seq, last_seq and tree_size: [`tiling`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    #[serde(with = "b64::hashes")]
    pub left: Vec<Hash>,
    #[serde(with = "b64::hashes")]
    pub right: Vec<Hash>,
}

/// A perfect aligned subtree: leaves `start .. start + 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub level: u32,
    pub start: u64,
}

/// The largest perfect aligned subtrees that tile leaves `[begin, end)`, left to right. For
/// `[0, n)` they are the tree of size n's right edge (one per set bit of n).
pub fn tiling(mut begin: u64, end: u64) -> Vec<Node> {
    let mut out = Vec::new();
    while begin < end {
        let mut level = if begin == 0 { 63 } else { begin.trailing_zeros() };
        while level > 0 && (1u64 << level) > end - begin {
            level -= 1;
        }
        out.push(Node { level, start: begin });
        begin += 1 << level;
    }
    out
}

/// The leaves of a range, taken one by one in order, in constant memory: the range's own root
/// (as a tree of its own) and the perfect subtrees it makes in the big tree (as it is aligned
/// there).
#[derive(Debug, Clone)]
pub struct RangeHasher {
    own: RightEdge,
    end: u64,
    stack: Vec<(u32, Hash)>,
}

impl RangeHasher {
    /// A range whose first leaf has index `begin` (seq - 1).
    pub fn new(begin: u64) -> Self {
        RangeHasher { own: RightEdge::default(), end: begin, stack: Vec::new() }
    }

    pub fn push(&mut self, leaf: Hash) {
        self.own.append(leaf);
        self.stack.push((0, leaf));
        self.end += 1;
        // Two neighbours of one size merge when together they are an aligned subtree.
        while let [.., (l1, h1), (l2, h2)] = self.stack[..] {
            if l1 != l2 || !self.end.is_multiple_of(1u64 << (l2 + 1)) {
                break;
            }
            self.stack.truncate(self.stack.len() - 2);
            self.stack.push((l1 + 1, node_hash(&h1, &h2)));
        }
    }

    pub fn leaves(&self) -> u64 {
        self.own.size()
    }

    /// The root of the range's leaves as a tree of their own.
    pub fn range_root(&self) -> Hash {
        self.own.root()
    }

    /// The range's perfect subtrees in the big tree, left to right: [`tiling`] of the range.
    pub fn subtrees(&self) -> Vec<Hash> {
        self.stack.iter().map(|(_, h)| *h).collect()
    }
}

/// Why an archived range does not lead to its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("the range {first}..={last} is not inside a tree of size {size}")]
    OutsideTree { first: i64, last: i64, size: u64 },
    #[error("the archive holds {got} leaves where seq {first}..={last} needs {want}")]
    LeafCount { first: i64, last: i64, want: u64, got: u64 },
    #[error("the range root computed from the archive is not the manifest's")]
    RangeRoot,
    #[error("the proof has {got} hashes on the {side}; the range's position needs {want}")]
    ProofLength { side: &'static str, want: usize, got: usize },
    #[error("the range, with the proof, does not lead to the checkpoint's root")]
    Root,
}

/// Checks that the leaves hashed into `range` are seq `first..=last` of the tree `checkpoint`
/// signed: the range's own root is the manifest's, and with the proof's subtrees on either
/// side the tree's root is the checkpoint's.
pub fn check_range(manifest: &Manifest, range: &RangeHasher) -> Result<(), RangeError> {
    let (first, last, size) = (manifest.first_seq, manifest.last_seq, manifest.checkpoint.tree_size);
    if first < 1 || last < first || last as u64 > size {
        return Err(RangeError::OutsideTree { first, last, size });
    }
    let want = (last - first + 1) as u64;
    if range.leaves() != want {
        return Err(RangeError::LeafCount { first, last, want, got: range.leaves() });
    }
    if range.range_root() != manifest.range_root {
        return Err(RangeError::RangeRoot);
    }
    let root =
        root_from(first as u64 - 1, last as u64, size, &manifest.proof.left, &range.subtrees(), &manifest.proof.right)?;
    if root != manifest.checkpoint.root_hash {
        return Err(RangeError::Root);
    }
    Ok(())
}

/// The root of the tree of `size` leaves from the subtrees tiling `[0, begin)` (`left`),
/// `[begin, end)` (`middle`) and `[end, size)` (`right`), each as [`tiling`] gives them.
pub fn root_from(
    begin: u64,
    end: u64,
    size: u64,
    left: &[Hash],
    middle: &[Hash],
    right: &[Hash],
) -> Result<Hash, RangeError> {
    let parts =
        [("left", tiling(0, begin), left), ("range", tiling(begin, end), middle), ("right", tiling(end, size), right)];
    let mut stack: Vec<(Node, Hash)> = Vec::new();
    for (side, nodes, hashes) in parts {
        if nodes.len() != hashes.len() {
            return Err(RangeError::ProofLength { side, want: nodes.len(), got: hashes.len() });
        }
        for (node, hash) in nodes.into_iter().zip(hashes) {
            stack.push((node, *hash));
            // Siblings merge into their parent: the tiling of [0, size) by the largest subtrees.
            while let [.., (a, ha), (b, hb)] = stack[..] {
                if a.level != b.level || !a.start.is_multiple_of(1u64 << (a.level + 1)) {
                    break;
                }
                stack.truncate(stack.len() - 2);
                stack.push((Node { level: a.level + 1, start: a.start }, node_hash(&ha, &hb)));
            }
        }
    }
    let mut it = stack.iter().rev();
    let Some(&(_, mut root)) = it.next() else { return Ok(super::merkle::EMPTY_ROOT) };
    for (_, left) in it {
        root = node_hash(left, &root);
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::merkle::record_hash;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| record_hash(&i.to_be_bytes())).collect()
    }

    fn root_of(leaves: &[Hash]) -> Hash {
        let mut edge = RightEdge::default();
        for l in leaves {
            edge.append(*l);
        }
        edge.root()
    }

    /// The hash of a perfect subtree, from the leaves (the test's stand-in for stored hashes).
    fn subtree(all: &[Hash], node: Node) -> Hash {
        root_of(&all[node.start as usize..(node.start + (1 << node.level)) as usize])
    }

    #[test]
    fn tilings_cover_the_range_with_the_largest_aligned_subtrees() {
        assert_eq!(tiling(0, 0), []);
        assert_eq!(tiling(0, 6), [Node { level: 2, start: 0 }, Node { level: 1, start: 4 }]);
        assert_eq!(
            tiling(3, 13),
            [
                Node { level: 0, start: 3 },
                Node { level: 2, start: 4 },
                Node { level: 2, start: 8 },
                Node { level: 0, start: 12 }
            ]
        );
    }

    #[test]
    fn every_range_of_every_small_tree_leads_to_its_root() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let want = root_of(&all[..size as usize]);
            for begin in 0..size {
                for end in begin + 1..=size {
                    let mut range = RangeHasher::new(begin);
                    for l in &all[begin as usize..end as usize] {
                        range.push(*l);
                    }
                    assert_eq!(range.range_root(), root_of(&all[begin as usize..end as usize]));
                    let side = |a, b| tiling(a, b).into_iter().map(|n| subtree(&all, n)).collect::<Vec<_>>();
                    let middle = range.subtrees();
                    assert_eq!(middle, side(begin, end), "{begin}..{end}");
                    let root = root_from(begin, end, size, &side(0, begin), &middle, &side(end, size)).unwrap();
                    assert_eq!(root, want, "size {size}, range {begin}..{end}");
                }
            }
        }
    }

    #[test]
    fn a_changed_leaf_or_a_wrong_proof_is_caught() {
        let all = leaves(21);
        let side = |a, b| tiling(a, b).into_iter().map(|n| subtree(&all, n)).collect::<Vec<_>>();
        let mut range = RangeHasher::new(5);
        for l in &all[5..13] {
            range.push(*l);
        }
        let mut manifest = Manifest {
            format: FORMAT.into(),
            partition: "2026_11".into(),
            first_seq: 6,
            last_seq: 13,
            range_root: range.range_root(),
            files: Vec::new(),
            checkpoint: ManifestCheckpoint { tree_size: 21, root_hash: root_of(&all), note: String::new() },
            proof: RangeProof { left: side(0, 5), right: side(13, 21) },
        };
        assert_eq!(check_range(&manifest, &range), Ok(()));
        let mut changed = RangeHasher::new(5);
        for (i, l) in all[5..13].iter().enumerate() {
            changed.push(if i == 3 { record_hash(b"x") } else { *l });
        }
        assert_eq!(check_range(&manifest, &changed), Err(RangeError::RangeRoot));
        manifest.proof.right[0] = record_hash(b"y");
        assert_eq!(check_range(&manifest, &range), Err(RangeError::Root));
        manifest.proof.right.pop();
        assert!(matches!(check_range(&manifest, &range), Err(RangeError::ProofLength { side: "right", .. })));
        manifest.last_seq = 22;
        assert!(matches!(check_range(&manifest, &range), Err(RangeError::OutsideTree { .. })));
    }
}
