class DataError(Exception):
    """The job's data cannot be trained on; the message tells the user what to fix."""


class ModelError(Exception):
    """The requested model cannot be built (weights missing, unusable size, …)."""
