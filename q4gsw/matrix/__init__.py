"""matrix.toml as typed values: loading and checks (load.py, checker.py), the value types (values.py) and the
kernel expressions evaluated against them (expressions.py)."""
