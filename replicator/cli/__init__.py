"""The ``replicator`` command: typer commands that parse arguments and call library functions.

The top layer: imports anything, imported by nothing in the product.
"""
