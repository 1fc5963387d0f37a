"""Loading routing files: `load_file`, `load_text` (both raise only ConfigError) and the shipped `schema_json`."""

from turnout.schema.loader import load_file, load_text
from turnout.schema.validate import schema_json

__all__ = ["load_file", "load_text", "schema_json"]
