"""Server-Sent Events: a job's events and epochs as they are recorded."""
