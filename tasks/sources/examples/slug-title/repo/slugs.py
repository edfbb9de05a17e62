"""URL slugs for blog posts."""

from __future__ import annotations


def slugify(title: str) -> str:
    """The slug of a post title: lower case words joined by single dashes."""
    return title.strip().lower().replace(" ", "-")


def post_url(year: int, title: str) -> str:
    """The path of a post: ``/<year>/<slug>/``."""
    return f"/{year}/{slugify(title)}/"
