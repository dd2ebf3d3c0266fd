"""Errors of the local stack: each says what is wrong and what to do."""


class StackError(RuntimeError):
    """A prerequisite is missing or a component failed; the message is for people."""
