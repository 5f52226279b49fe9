"""zapmux: a multi-tenant WhatsApp gateway that loses nothing it has accepted."""

__version__ = "0.1.0"
