"""A local web page over a run folder: ``patchswarm view PATH`` serves it and refreshes it
while the run goes on; ``--export`` writes the same page as one self-contained file."""
