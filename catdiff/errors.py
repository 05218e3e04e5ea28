"""The one exception type for mistakes a user can fix.

Entry points catch :class:`UserError` and print its message on one line (no traceback), so
every message must say what was wrong and what to do, naming the config key or file.
"""


class UserError(ValueError):
    """A bad input (config value, file, folder) that the user can fix; message is one line."""


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise UserError naming ``key`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UserError(f"{key}={value!r} is unknown; choose one of {', '.join(choices)}")


class TrainingDiverged(RuntimeError):
    """The loss went non-finite; the message names the run folder with the last good checkpoint."""
