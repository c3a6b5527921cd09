"""Analysis routes: the diagnosis of a job; the logic lives in models.analysis."""
