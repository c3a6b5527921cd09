"""Training as plain functions of a spec and a metrics sink: no broker, no database."""
