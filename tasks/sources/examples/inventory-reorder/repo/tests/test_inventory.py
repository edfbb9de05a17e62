import pytest

from inventory import Inventory, Item, OutOfStock


def make_inventory() -> Inventory:
    inv = Inventory()
    inv.add(Item("A-1", "bolts", quantity=50, reorder_level=20))
    inv.add(Item("B-2", "nuts", quantity=5, reorder_level=10))
    inv.add(Item("C-3", "washers", quantity=10, reorder_level=10))
    return inv


def test_item_below_level_needs_reorder():
    assert "B-2" in make_inventory().needs_reorder()


def test_item_at_level_needs_reorder():
    assert make_inventory().needs_reorder() == ["B-2", "C-3"]


def test_shipping_down_to_level_triggers_reorder():
    inv = make_inventory()
    inv.ship("A-1", 30)
    assert "A-1" in inv.needs_reorder()


def test_item_above_level_is_not_reordered():
    assert "A-1" not in make_inventory().needs_reorder()


def test_ship_more_than_stock_raises():
    with pytest.raises(OutOfStock):
        make_inventory().ship("B-2", 6)


def test_receive_and_total():
    inv = make_inventory()
    inv.receive("B-2", 15)
    assert inv.total_units() == 80
    assert "B-2" not in inv.needs_reorder()
