"""Errors that carry a message a user can act on: what is wrong, and how to fix it.

Exit codes are the same in every command (`ehrforge.errors.exit_code`, docs/crash-safety.md):
    0  done (or nothing to do)
    1  a check or a run failed: a failed dbt build or test, a critical expectation, a crashed training process
    2  bad input or config: fix the command, the config, the raw files or the warehouse state, then rerun
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class EhrforgeError(RuntimeError):
    """Base class; CLIs print the message without a traceback and exit with `exit_code`."""

    exit_code = EXIT_FAILED


class WarehouseError(EhrforgeError):
    """Warehouse missing, locked, or its marts are not from a finished, successful build."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(EhrforgeError):
    exit_code = EXIT_BAD_INPUT


class InputDataError(EhrforgeError):
    exit_code = EXIT_BAD_INPUT


class RunFailedError(EhrforgeError):
    """The work itself failed (dbt build errors, a training process crashed)."""

    exit_code = EXIT_FAILED


def exit_code(exc: BaseException) -> int:
    """The exit code a command returns for `exc` (2 bad input or config, 1 anything else)."""
    return getattr(exc, "exit_code", EXIT_FAILED)
