"""Scripts that keep generated parts of the repository current (not part of the package)."""
