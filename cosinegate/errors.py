"""The one exception type for problems a user can fix."""


class CosineGateError(Exception):
    """A user-fixable problem. The message names the problem and the fix.

    Command scripts print it as one line and exit with status 2.
    """
