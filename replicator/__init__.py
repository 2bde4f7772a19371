"""Cross-region replication for DynamoDB tables."""

# The one place the version is written: pyproject.toml reads it, and the Lambda zip (which
# carries the source tree without package metadata) still knows it.
__version__ = "0.1.0"
