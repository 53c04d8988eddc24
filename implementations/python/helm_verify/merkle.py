"""RFC 9162 §2.1.1 Merkle Tree Hash, as a list function and as an accumulator."""

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list) -> bytes:
    """Direct recursive definition (for tests and small lists)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


class MerkleAccumulator:
    """Keeps the roots of the perfect subtrees given by the binary digits of n."""

    def __init__(self):
        self.n = 0
        self.stack: list[tuple[int, bytes]] = []  # (size, root), sizes decreasing

    def append(self, data: bytes) -> None:
        node = (1, leaf_hash(data))
        while self.stack and self.stack[-1][0] == node[0]:
            size, left = self.stack.pop()
            node = (size * 2, node_hash(left, node[1]))
        self.stack.append(node)
        self.n += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        acc = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            acc = node_hash(left, acc)
        return acc


def verify_inclusion(index: int, size: int, leaf: bytes, path: list, root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: is the leaf hash ``leaf`` at ``index`` in the tree of ``size``
    leaves with root ``root``?"""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, first_root: bytes, second: int, second_root: bytes, path: list) -> bool:
    """RFC 9162 §2.1.4.2, for 0 < first < second."""
    if not 0 < first < second:
        return False
    path = list(path)
    if first & (first - 1) == 0:  # an exact power of 2
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
