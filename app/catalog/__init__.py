"""The catalogue: the hosting domain's task, operation, action and entity types."""
