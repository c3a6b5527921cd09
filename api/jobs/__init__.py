"""Job routes; the logic lives in models.jobs."""
