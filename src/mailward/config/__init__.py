"""Configuration: one typed model (``model.py``) loaded in layers (``loader.py``)."""

from mailward.config.loader import DEFAULT_PATH, load
from mailward.config.model import Settings

__all__ = ["DEFAULT_PATH", "Settings", "load"]
