"""Authentication and authorization: API keys (generation, digests, the principal lookup),
key commands, and the first admin key at start-up (docs/security.md)."""
