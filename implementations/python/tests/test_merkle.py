import hashlib

from helm_verify.merkle import EMPTY_ROOT, MerkleAccumulator, leaf_hash, mth, node_hash


def test_empty_and_small():
    assert EMPTY_ROOT.hex().startswith("e3b0c442")
    d = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
    assert mth([d[0]]) == hashlib.sha256(b"\x00" + d[0]).digest()
    assert mth(d) == node_hash(node_hash(leaf_hash(d[0]), leaf_hash(d[1])), leaf_hash(d[2]))


def test_accumulator_matches_definition():
    acc = MerkleAccumulator()
    leaves = []
    assert acc.root() == mth([])
    for i in range(100):
        h = hashlib.sha256(i.to_bytes(4, "big")).digest()
        acc.append(h)
        leaves.append(h)
        assert acc.root() == mth(leaves), i
