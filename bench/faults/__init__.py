"""The fault-injection suite of issue 18: `python -m bench.faults [--rows R1,R3] [--quick]`.

Each row starts real processes, injects its fault with real signals, and counts its figure
from the log. bench/results/faults.md (and .json) hold the last run; docs/reliability.md
("Fault-injection suite") says what each row found.
"""
