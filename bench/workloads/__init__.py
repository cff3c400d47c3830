"""The workloads. Each is an async function (system, env) -> {metric: value, "details": {...}}
run once per run; bench/registry.py names them, their metrics and their targets."""
