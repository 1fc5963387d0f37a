"""Loading routing files: `load_file`/`load_text` (raise only ConfigError), `locate_problems`, `schema_json`."""

from turnout.schema.loader import load_file, load_text, locate_problems
from turnout.schema.validate import schema_json

__all__ = ["load_file", "load_text", "locate_problems", "schema_json"]
