"""A job's diagnosis from its stored records: history loading, caching and the remedies a fork applies."""
