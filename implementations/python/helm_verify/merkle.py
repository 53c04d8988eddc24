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
