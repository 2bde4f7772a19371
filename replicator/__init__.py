"""Cross-region replication for DynamoDB tables."""
