"""The `hyperstyle` command line (also `python -m hyperstyle_core`)."""
from .main import main

__all__ = ["main"]
