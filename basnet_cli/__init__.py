"""basnet-cli: BASNet salient-object masks from the command line."""

__version__ = "0.1.0"
