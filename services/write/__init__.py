"""The write path: parse, publish to the log, wait until the read models show it."""
