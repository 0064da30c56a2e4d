"""Helpers for training code inside a job: HF Trainer, distributed environment, checkpoints."""
