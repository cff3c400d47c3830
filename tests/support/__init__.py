"""What the tests share: harnesses, builders, servers and brokers they start."""
