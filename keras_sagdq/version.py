"""The package version, read by setup.cfg and `keras_sagdq.__version__`."""

__version__ = "0.1.0"
