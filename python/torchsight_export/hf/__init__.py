"""Adapters that export real Hugging Face transformers models (one concern a module)."""
from .adapter import HFAdapter, is_transformers_model
from .families import FAMILIES, UnsupportedArchitecture, family_of

__all__ = ["HFAdapter", "is_transformers_model", "FAMILIES", "UnsupportedArchitecture", "family_of"]
