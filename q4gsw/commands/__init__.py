"""The commands beyond `run`: list, report, bench, audit, mutants, ci-matrix. Each is a thin front-end over the
one selection and `execute_case`."""
