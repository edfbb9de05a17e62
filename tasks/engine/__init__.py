"""The engine: the one repair loop (runner), verification, the run store,
the verdict cache, reports, problems and issue-only reproduction.
"""
