"""Continued pre-training: the training loop, its checkpoints, schedules, router statistics,
distributed helpers and evaluation."""
