"""Plumbing shared by the entry points: errors, devices, seeding, checkpoints, logging."""
