"""Number theory helpers for the toy crypto exercises."""

from __future__ import annotations


def gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return abs(a)


def modpow(base: int, exponent: int, modulus: int) -> int:
    """base ** exponent % modulus, by repeated squaring."""
    if exponent < 0:
        raise ValueError("negative exponent")
    if modulus < 1:
        raise ValueError("modulus must be positive")
    if exponent == 1:
        return base % modulus
    half = modpow(base, exponent // 2, modulus)
    result = half * half % modulus
    if exponent % 2:
        result = result * base % modulus
    return result


def mod_inverse(a: int, prime: int) -> int:
    """Inverse of a modulo a prime, via Fermat's little theorem."""
    if a % prime == 0:
        raise ZeroDivisionError(f"{a} has no inverse modulo {prime}")
    return modpow(a, prime - 2, prime)


def is_probable_prime(n: int, bases: tuple[int, ...] = (2, 3, 5, 7)) -> bool:
    """Fermat primality test; good enough for small exercise numbers."""
    if n < 2:
        return False
    for base in bases:
        if n == base:
            return True
        if n % base == 0 or modpow(base, n - 1, n) != 1:
            return False
    return True
