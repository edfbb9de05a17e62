"""Stock keeping for a small warehouse."""

from __future__ import annotations

from dataclasses import dataclass


class OutOfStock(Exception):
    """Raised when more units are requested than are on hand."""


@dataclass
class Item:
    sku: str
    name: str
    quantity: int
    reorder_level: int


class Inventory:
    def __init__(self) -> None:
        self._items: dict[str, Item] = {}

    def add(self, item: Item) -> None:
        if item.sku in self._items:
            raise ValueError(f"duplicate sku: {item.sku}")
        self._items[item.sku] = item

    def receive(self, sku: str, units: int) -> None:
        if units <= 0:
            raise ValueError("units must be positive")
        self._items[sku].quantity += units

    def ship(self, sku: str, units: int) -> None:
        item = self._items[sku]
        if units > item.quantity:
            raise OutOfStock(f"{sku}: requested {units}, have {item.quantity}")
        item.quantity -= units

    def needs_reorder(self) -> list[str]:
        """SKUs whose stock has fallen to (or below) their reorder level, sorted."""
        return sorted(
            item.sku for item in self._items.values() if item.quantity < item.reorder_level
        )

    def total_units(self) -> int:
        return sum(item.quantity for item in self._items.values())
