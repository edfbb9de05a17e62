"""Load customer records from the shop's CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

TRUTHY = {"yes", "y", "true", "1"}


def parse_customer(row: dict[str, str]) -> dict[str, Any]:
    """Turn one CSV row into a customer record.

    The record always has "id", "name" and "newsletter" keys. "email" is present only
    when the row has a non-empty email column; addresses are lower-cased.
    """
    customer: dict[str, Any] = {"id": int(row["id"]), "name": row["name"].strip()}
    email = (row.get("email") or "").strip().lower()
    if email:
        customer["email"] = email
    customer["newsletter"] = (row.get("newsletter") or "").strip().lower() in TRUTHY
    return customer


def read_customers(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for row in csv.DictReader(lines):
        yield parse_customer(row)
