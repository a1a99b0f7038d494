"""Did my change move the numbers: the drift rule between two runs (rule.py), baselines (baseline.py), their
report (report.py) and bench baselines (bench.py)."""
