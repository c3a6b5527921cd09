"""The data contract shared by the API and the worker: job spec, SQL tables, database session."""
