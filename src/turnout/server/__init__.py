"""The OpenAI-compatible sidecar (`turnout serve`): aiohttp app, health, metrics, auth, hot reload.

`turnout.server.app.create_app(router, ...)` builds the app; `turnout.server.run.serve(...)` runs it. This
package's `__init__` stays empty so that importing `turnout.cli` does not import aiohttp.
"""
