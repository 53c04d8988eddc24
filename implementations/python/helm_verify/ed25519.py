"""Ed25519 with the strict semantics of spec/ed25519.md.

Point decoding, the small-order and prime-order checks use pure-Python Edwards25519
arithmetic (extended coordinates). The final cofactorless equation is checked by
OpenSSL through the ``cryptography`` package (spec/ed25519.md §7), after this
module's own checks 1-8. ``verify_pure`` does the whole algorithm in Python; the
tests compare both on every CCTV case.
"""

import hashlib

p = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
d = (-121665 * pow(121666, p - 2, p)) % p
SQRT_M1 = pow(2, (p - 1) // 4, p)

# Extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
IDENTITY = (0, 1, 1, 0)


def _add(P, Q):
    # RFC 8032 §5.1.4
    X1, Y1, Z1, T1 = P
    X2, Y2, Z2, T2 = Q
    A = (Y1 - X1) * (Y2 - X2) % p
    B = (Y1 + X1) * (Y2 + X2) % p
    C = T1 * 2 * d * T2 % p
    D = Z1 * 2 * Z2 % p
    E = B - A
    F = D - C
    G = D + C
    H = B + A
    return (E * F % p, G * H % p, F * G % p, E * H % p)


def _double(P):
    X1, Y1, Z1, _ = P
    A = X1 * X1 % p
    B = Y1 * Y1 % p
    C = 2 * Z1 * Z1 % p
    H = (A + B) % p
    E = (H - (X1 + Y1) * (X1 + Y1)) % p
    G = (A - B) % p
    F = (C + G) % p
    return (E * F % p, G * H % p, F * G % p, E * H % p)


def scalar_mult(k: int, P):
    Q = IDENTITY
    while k > 0:
        if k & 1:
            Q = _add(Q, P)
        P = _double(P)
        k >>= 1
    return Q


def negate(P):
    X, Y, Z, T = P
    return ((-X) % p, Y, Z, (-T) % p)


def is_identity(P) -> bool:
    X, Y, Z, _ = P
    return X % p == 0 and (Y - Z) % p == 0


def encode_point(P) -> bytes:
    X, Y, Z, _ = P
    zi = pow(Z, p - 2, p)
    x = X * zi % p
    y = Y * zi % p
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def y_canonical(b: bytes) -> bool:
    return (int.from_bytes(b, "little") & ((1 << 255) - 1)) < p


def decode_point(b: bytes):
    """RFC 8032 §5.1.3 strict decoding (spec/ed25519.md §2.1); None on failure."""
    if len(b) != 32:
        return None
    v = int.from_bytes(b, "little")
    sign = v >> 255
    y = v & ((1 << 255) - 1)
    if y >= p:
        return None
    u = (y * y - 1) % p
    w = (d * y * y + 1) % p
    # x = (u/w)^((p+3)/8) computed as u w^3 (u w^7)^((p-5)/8)
    x = u * pow(w, 3, p) * pow(u * pow(w, 7, p), (p - 5) // 8, p) % p
    if (w * x * x - u) % p != 0:
        x = x * SQRT_M1 % p
        if (w * x * x - u) % p != 0:
            return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


B_POINT = decode_point(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


def is_small_order(P) -> bool:
    return is_identity(scalar_mult(8, P))


def is_prime_order(P) -> bool:
    return is_identity(scalar_mult(L, P))


_admissible_cache: dict[bytes, bool] = {}


def key_admissible(a: bytes) -> bool:
    """spec/ed25519.md §5: checks 1-4 of §4, and [L]A is the identity (cached)."""
    r = _admissible_cache.get(a)
    if r is None:
        r = _key_admissible(a)
        if len(_admissible_cache) < 100000:
            _admissible_cache[bytes(a)] = r
    return r


def _key_admissible(a: bytes) -> bool:
    if len(a) != 32 or not y_canonical(a):
        return False
    A = decode_point(a)
    if A is None:
        return False
    if encode_point(A) != a:
        return False
    if is_small_order(A):
        return False
    return is_prime_order(A)


_key_ok_cache: dict[bytes, bool] = {}


def _key_checks(a: bytes) -> bool:
    """Checks 1-4 of §4 on A (cached: they depend on A only)."""
    r = _key_ok_cache.get(a)
    if r is None:
        A = decode_point(a) if len(a) == 32 and y_canonical(a) else None
        r = A is not None and encode_point(A) == a and not is_small_order(A)
        if len(_key_ok_cache) < 100000:
            _key_ok_cache[a] = r
    return r


def _r_and_s_checks(sig: bytes) -> bool:
    r, s = sig[:32], sig[32:]
    if not y_canonical(r):  # check 5
        return False
    R = decode_point(r)  # check 6
    if R is None:
        return False
    if is_small_order(R):  # check 7
        return False
    if int.from_bytes(s, "little") >= L:  # check 8
        return False
    return True


def verify(a: bytes, msg: bytes, sig: bytes) -> bool:
    """Strict verification (§4): our checks 1-8, then OpenSSL's cofactorless
    equation (checks 9-10)."""
    if len(a) != 32 or len(sig) != 64:
        return False
    if not _key_checks(a) or not _r_and_s_checks(sig):
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(a).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_pure(a: bytes, msg: bytes, sig: bytes) -> bool:
    """The whole of §4 in Python (slow; used to cross-check ``verify``)."""
    if len(a) != 32 or len(sig) != 64:
        return False
    if not _key_checks(a) or not _r_and_s_checks(sig):
        return False
    A = decode_point(a)
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    k = int.from_bytes(hashlib.sha512(r + a + msg).digest(), "little") % L
    check = _add(scalar_mult(s, B_POINT), negate(scalar_mult(k, A)))
    return encode_point(check) == r


# ---- signing (for tests and the fuzzer: RFC 8032 §5.1.6) ----

def secret_expand(seed: bytes) -> tuple[int, bytes]:
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(seed: bytes) -> bytes:
    a, _ = secret_expand(seed)
    return encode_point(scalar_mult(a, B_POINT))


def sign(seed: bytes, msg: bytes) -> bytes:
    """Ed25519 signature; uses ``cryptography`` when available (fast)."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)
    except ImportError:  # pragma: no cover
        a, prefix = secret_expand(seed)
        A = encode_point(scalar_mult(a, B_POINT))
        r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % L
        R = encode_point(scalar_mult(r, B_POINT))
        k = int.from_bytes(hashlib.sha512(R + A + msg).digest(), "little") % L
        return R + ((r + k * a) % L).to_bytes(32, "little")
