"""What the service and its clients agree on: the job spec with its defaults, the epoch record and the
response schemas. Depends on pydantic only, so the client, the analysis and the server share one declaration."""
