"""A node: the log, the runtime and the read models wired into one process."""
