from customers import parse_customer, read_customers
from newsletter import export, opt_in_rate, recipients

CSV = """id,name,email,newsletter
1,Ann,ann@example.com,yes
2,Bob,BOB@example.com,no
3,Cy,,yes
4,Dee,dee@example.com,Y
5,Ann again,Ann@Example.com,true
""".splitlines(keepends=True)


def test_parse_customer_normalises_email():
    row = {"id": "7", "name": " Eve ", "email": " EVE@Example.com ", "newsletter": "Yes"}
    assert parse_customer(row) == {
        "id": 7,
        "name": "Eve",
        "email": "eve@example.com",
        "newsletter": True,
    }


def test_parse_customer_without_email():
    customer = parse_customer({"id": "8", "name": "Flo", "email": "", "newsletter": "no"})
    assert "email" not in customer


def test_recipients_of_no_customers():
    assert recipients([]) == []


def test_recipients_only_opted_in():
    customers = [
        {"id": 1, "name": "Ann", "email": "ann@example.com", "newsletter": True},
        {"id": 2, "name": "Bob", "email": "bob@example.com", "newsletter": False},
    ]
    assert recipients(customers) == ["ann@example.com"]


def test_recipients_skip_customers_without_email():
    customers = list(read_customers(CSV))
    assert recipients(customers) == ["ann@example.com", "dee@example.com"]


def test_export_text():
    assert export(CSV) == "ann@example.com\ndee@example.com"


def test_opt_in_rate():
    assert opt_in_rate(read_customers(CSV)) == 0.8
    assert opt_in_rate([]) == 0.0
