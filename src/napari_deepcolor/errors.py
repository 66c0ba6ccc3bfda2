"""The one exception type for every error a user can cause."""


class DeepColorError(Exception):
    """A problem with the user's input, files or settings.

    The message says what is wrong and what to do about it; the CLI and the
    widgets show it as it is, without a traceback.
    """
