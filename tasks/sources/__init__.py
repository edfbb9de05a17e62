"""Problem sources: each turns its input (a batch spec, a GitHub issue, a
SWE-bench instance, math questions, theorems, the bundled examples) into problems
for the engine.
"""
