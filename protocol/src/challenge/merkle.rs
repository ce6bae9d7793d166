//! The Merkle tree over the row hashes, its paths and their check.
//!
//! Leaves are [`super::matrix::row_hash`]es (keyed with the leaf key);
//! a node is `keyed_hash(NODE_KEY, left ‖ right)` with
//! `NODE_KEY = derive_key("agora/1/challenge-node", "")`, so no leaf is
//! ever read as a node. A level of odd width promotes its last hash
//! unchanged (nothing is duplicated, so no two leaf lists of one length
//! share a root), and the shape follows from the number of leaves alone,
//! which both sides know
//! (`m · n`): a path is one sibling per level where the node has one.

use std::sync::LazyLock;

static NODE_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("agora/1/challenge-node", b""));

/// A 32-byte hash: a leaf, a node or the root.
pub type Hash = [u8; 32];

/// The parent of two nodes.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(left);
    bytes[32..].copy_from_slice(right);
    *blake3::keyed_hash(&NODE_KEY, &bytes).as_bytes()
}

/// Every level of the tree, the leaves first.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// The tree over `leaves`.
    pub fn new(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [only] => *only,
                    _ => [0; 32],
                })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    /// Leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// No leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root; all zeros for an empty tree (which no valid challenge has).
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0; 32])
    }

    /// The path of leaf `index`, leaf to root; `None` past the last leaf.
    pub fn path(&self, index: u64) -> Option<Vec<Hash>> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::new();
        let mut i = usize::try_from(index).ok()?;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i >>= 1;
        }
        Some(path)
    }
}

/// The root that `leaf` at `index` of a tree of `leaves` leaves leads to
/// along `path`; `None` when the index is outside the tree or the path is
/// not exactly as long as that leaf's.
pub fn root_from_path(leaf: &Hash, index: u64, leaves: u64, path: &[Hash]) -> Option<Hash> {
    if index >= leaves {
        return None;
    }
    let mut siblings = path.iter();
    let (mut hash, mut i, mut width) = (*leaf, index, leaves);
    while width > 1 {
        if (i ^ 1) < width {
            let sibling = siblings.next()?;
            hash = if i & 1 == 0 {
                node_hash(&hash, sibling)
            } else {
                node_hash(sibling, &hash)
            };
        }
        i >>= 1;
        width = width.div_ceil(2);
    }
    match siblings.next() {
        None => Some(hash),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count)
            .map(|i| *blake3::hash(&i.to_le_bytes()).as_bytes())
            .collect()
    }

    #[test]
    fn every_path_of_every_shape_leads_to_the_root() {
        for count in 1..=40u64 {
            let tree = MerkleTree::new(leaves(count));
            assert_eq!(tree.len(), count);
            let root = tree.root();
            for (i, leaf) in leaves(count).iter().enumerate() {
                let i = i as u64;
                let path = tree.path(i).unwrap();
                assert_eq!(root_from_path(leaf, i, count, &path), Some(root));
                // Another position, a longer or shorter path: never the root.
                if count > 1 {
                    let j = (i + 1) % count;
                    assert_ne!(root_from_path(leaf, j, count, &path), Some(root));
                }
                let mut long = path.clone();
                long.push([0; 32]);
                assert_eq!(root_from_path(leaf, i, count, &long), None);
                if !path.is_empty() {
                    assert_eq!(
                        root_from_path(leaf, i, count, &path[..path.len() - 1]),
                        None
                    );
                }
            }
            assert_eq!(tree.path(count), None);
            assert_eq!(root_from_path(&[0; 32], count, count, &[]), None);
        }
    }

    #[test]
    fn a_changed_leaf_or_sibling_changes_the_root() {
        let tree = MerkleTree::new(leaves(13));
        let root = tree.root();
        let path = tree.path(6).unwrap();
        let leaf = leaves(13)[6];
        let mut bad = leaf;
        bad[0] ^= 1;
        assert_ne!(root_from_path(&bad, 6, 13, &path), Some(root));
        for s in 0..path.len() {
            let mut tampered = path.clone();
            tampered[s][31] ^= 1;
            assert_ne!(root_from_path(&leaf, 6, 13, &tampered), Some(root));
        }
    }

    #[test]
    fn small_trees_have_the_expected_shape() {
        let l = leaves(3);
        let tree = MerkleTree::new(l.clone());
        assert_eq!(tree.root(), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(tree.path(2).unwrap(), vec![node_hash(&l[0], &l[1])]);
        assert_eq!(MerkleTree::new(vec![l[0]]).root(), l[0]);
        assert_eq!(MerkleTree::new(Vec::new()).root(), [0; 32]);
        // Leaves and nodes are hashed apart: the node over two leaves is
        // not the leaf hash of their bytes.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&l[0]);
        bytes.extend_from_slice(&l[1]);
        assert_ne!(node_hash(&l[0], &l[1]), *blake3::hash(&bytes).as_bytes());
    }
}
