"""The reliability suite (issue 8): the whole service under faults, load, hostile input and
scale-out. Marked ``slow``: CI runs it, ``-m "not slow"`` skips it locally."""
