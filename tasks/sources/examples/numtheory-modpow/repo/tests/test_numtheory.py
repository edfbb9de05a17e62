import pytest

from numtheory import gcd, is_probable_prime, mod_inverse, modpow


def test_gcd():
    assert gcd(48, 18) == 6
    assert gcd(-4, 6) == 2


def test_modpow_matches_builtin():
    for base, exponent, modulus in [(3, 5, 7), (2, 10, 1000), (7, 13, 11), (5, 1, 3)]:
        assert modpow(base, exponent, modulus) == pow(base, exponent, modulus)


def test_modpow_zero_exponent():
    assert modpow(5, 0, 7) == 1
    assert modpow(123, 0, 1000) == 1


def test_mod_inverse():
    assert mod_inverse(3, 7) * 3 % 7 == 1
    with pytest.raises(ZeroDivisionError):
        mod_inverse(14, 7)


def test_mod_inverse_modulo_two():
    assert mod_inverse(3, 2) == 1


def test_is_probable_prime():
    assert [n for n in range(20) if is_probable_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]
