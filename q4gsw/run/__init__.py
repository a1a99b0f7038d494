"""A run of the matrix, by job: the stages (stages.py), the child-process protocol (procs.py), the hidden child
entry points (workers.py), the export process (exporter.py), one child per config (children.py), the in-process
path (inprocess.py), progress lines (progress.py) and the cold-start machinery (prewarm.py, imported only when
used). See docs/architecture.md."""
