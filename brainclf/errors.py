"""The project's own error types: every failure a user can cause surfaces as one of these,
with a message that says what was wrong and what to do, never a traceback from deep inside Keras."""


class BrainclfError(Exception):
    """Base class of every error brainclf raises on purpose."""


class ImageError(BrainclfError):
    """An input file could not be turned into a model input (empty, not an image, too large, ...)."""


class DataError(BrainclfError):
    """A dataset folder is missing, empty or not laid out as class sub-folders."""


class ModelError(BrainclfError):
    """A model file or its card is missing, corrupt or does not match."""


class ConfigError(BrainclfError):
    """A training or evaluation setting is invalid (unknown architecture, bad size, ...)."""
