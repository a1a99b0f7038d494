"""What a run leaves behind: the typed results (result.py), results.json, JUnit, summary.md, plots, histograms,
the console table (write.py), bench scoreboards and the verdict with its exit codes."""
