"""Build the mailing list for the monthly newsletter."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from customers import read_customers


def recipients(customers: Iterable[dict[str, Any]]) -> list[str]:
    """Addresses of the customers who opted in, sorted, without duplicates."""
    addresses = {customer["mail"] for customer in customers if customer["newsletter"]}
    return sorted(addresses)


def export(lines: Iterable[str]) -> str:
    """The mailing list as text, one address per line."""
    return "\n".join(recipients(read_customers(lines)))


def opt_in_rate(customers: Iterable[dict[str, Any]]) -> float:
    """Share of customers who opted in to the newsletter, between 0 and 1."""
    flags = [bool(customer["newsletter"]) for customer in customers]
    return sum(flags) / len(flags) if flags else 0.0
