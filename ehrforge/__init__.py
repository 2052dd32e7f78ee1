"""ehrforge shared package: warehouse I/O, configuration and run metadata.

Everything the Python jobs (synthesis, training, evaluation, expectations) have in common lives here,
so that each job reads marts and writes tables the same way.
"""

__version__ = "0.1.0"
