"""Examples of user tools; load one with ``onward worker --tools examples.mytools``."""
