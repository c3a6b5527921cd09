"""A job's files: the trained model, resume checkpoints and TensorBoard event files."""
