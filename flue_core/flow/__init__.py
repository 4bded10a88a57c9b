"""Flow control: how many runs of a workflow may start, how fast, in which order, and which starts fold
into one run.

``limits`` holds what the store contract needs (the bottom of the imports); ``policy`` the workflow's
settings and the keys computed from a run's input at admission; ``why`` what a queued run waits for.
This package's ``__init__`` imports nothing, so the store contract can import ``limits`` alone.
"""
