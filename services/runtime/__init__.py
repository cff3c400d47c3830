"""What runs the jobs and tails the log: dispatcher, executor, projector, clock."""
