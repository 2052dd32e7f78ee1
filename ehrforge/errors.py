"""Errors that carry a message a user can act on: what is wrong, and how to fix it."""


class EhrforgeError(RuntimeError):
    """Base class; CLIs print the message without a traceback and exit non-zero."""


class WarehouseError(EhrforgeError):
    pass


class ConfigError(EhrforgeError):
    pass


class InputDataError(EhrforgeError):
    pass
