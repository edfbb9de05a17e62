from slugs import post_url, slugify


def test_simple_title():
    assert slugify("Hello World") == "hello-world"


def test_digits_are_kept():
    assert slugify("Top 10 Tips") == "top-10-tips"


def test_post_url():
    assert post_url(2024, "Release Notes") == "/2024/release-notes/"


def test_punctuation_is_dropped():
    assert slugify("Hello, World!") == "hello-world"


def test_repeated_spaces_give_one_dash():
    assert slugify("Python  and   Rust") == "python-and-rust"
