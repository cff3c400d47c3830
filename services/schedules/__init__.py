"""The scheduler (fires schedules once per fire time) and schedule commands."""
