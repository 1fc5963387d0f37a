"""Makes `import opentelemetry...` fail in a benchmarked sidecar, as if the otel extra were not installed.

Put this directory on PYTHONPATH (bench/sidecar/tracing.py does, for its `absent` variant); never used elsewhere.
"""

import sys


class _WithoutOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"No module named {name!r} (hidden by bench/sidecar/without_otel)")
        return None


sys.meta_path.insert(0, _WithoutOpenTelemetry())
