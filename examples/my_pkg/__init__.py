"""A user's plug-in package: the examples of CONTRIBUTING.md, as files that the tests train (``make test``,
and under 2-process DDP in tests/memory/test_distributed.py). Put the folder holding ``my_pkg`` on
PYTHONPATH (or ``pip install -e`` a package of your own) and name the classes by class path."""
