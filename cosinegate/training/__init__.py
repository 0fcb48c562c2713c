"""Training: the loop, schedules, compute penalty, checkpoints."""
