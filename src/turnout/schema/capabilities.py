"""Load-time checks that need the drivers: their options, and the capabilities a file declares for each model.

A capability the driver cannot honour is an error located at the `supports` entry (`prefill` on an OpenAI-compatible
provider without a prefill dialect, `vision` on a driver that cannot send images), not a 400 at run time. Options
are checked against the driver's schemas here too, so a typo is located at its key. Two warnings name traps that
are legal but rarely meant: a `supports` list without `streaming` (streamed requests skip that model, and a chain
of such models answers every stream with 503), and `mid_stream: continue` on a chain where no deployment can
continue a prefix (every cut stream still ends with an error).

Why `streaming` is not implied: `supports` lists what a model can do, completely, and is the one place that decides;
an implied entry would leave no way to mark the rare model that cannot stream (its upstream would answer a streamed
request with a 400, which fails the request instead of falling over). The warning makes the omission loud instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from turnout.config import OPT_IN_CAPABILITIES
from turnout.drivers.base import honoured, offers_embeddings, unhonoured
from turnout.schema.problems import Path, did_you_mean

if TYPE_CHECKING:
    from turnout.drivers.registry import DriverRegistry
    from turnout.schema.checks import Checker


class DriverChecks:
    """The driver-aware half of the semantic checks, over a `Checker`'s data and reporter."""

    def __init__(self, checker: Checker, registry: DriverRegistry) -> None:
        self.c = checker
        self.registry = registry
        self._classes: dict[str, Any] = {}
        self._bad_options: set[str] = set()  # providers whose options failed: their models are not judged

    def run(self) -> None:
        for name, spec in self.c.providers.items():
            self._provider_options(name, _dict(spec))
        capabilities = {name: self._model(name, _dict(spec)) for name, spec in self.c.models.items()}
        for name, spec in self.c.routes.items():
            self._route(name, _dict(spec), capabilities)

    # -- resolving ---------------------------------------------------------------------------------------------
    def driver_of(self, provider: Any) -> Any:
        """The driver class of a provider (by name), or None when it cannot be resolved (reported elsewhere)."""
        driver = _dict(self.c.providers.get(provider)).get("driver") if isinstance(provider, str) else None
        if not isinstance(driver, str):
            return None
        if driver not in self._classes:
            try:
                self._classes[driver] = self.registry.resolve(driver)
            except Exception:  # unknown or broken plug-in: the driver name check and compile report it
                self._classes[driver] = None
        return self._classes[driver]

    # -- providers and models ----------------------------------------------------------------------------------
    def _provider_options(self, name: str, spec: dict[str, Any]) -> None:
        cls = self.driver_of(name)
        schema = getattr(cls, "options_schema", None)
        if cls is None or schema is None or name in self.c.disabled:
            return
        if not self._options(spec.get("options") or {}, schema, ("providers", name, "options")):
            self._bad_options.add(name)

    def _model(self, name: str, spec: dict[str, Any]) -> frozenset[str] | None:
        """Check one model; return its effective capabilities (None: unknown, assume everything)."""
        provider = spec.get("provider")
        cls = self.driver_of(provider)
        if spec.get("kind") == "embeddings":
            if cls is not None and not offers_embeddings(cls):
                driver = getattr(cls, "name", provider)
                self.c.r.error(
                    ("models", name, "kind"),
                    f"driver '{driver}' cannot serve embeddings (it has no embeddings endpoint)",
                )
            return frozenset()
        supports = spec.get("supports")
        declared = frozenset(c for c in supports if isinstance(c, str)) if isinstance(supports, list) else None
        if cls is None:
            return declared
        options = _dict(_dict(self.c.providers.get(provider)).get("options"))
        model_options = _dict(spec.get("options"))
        schema = getattr(cls, "model_options_schema", None)
        path: Path = ("models", name)
        if schema is not None and not self._options(model_options, schema, (*path, "options")):
            return declared
        offers = honoured(cls, options, model_options)
        if not isinstance(supports, list):  # nothing declared: what the driver offers, never an opt-in capability
            return offers - OPT_IN_CAPABILITIES if offers is not None else None
        if provider not in self._bad_options:
            for index, message in unhonoured(cls, [str(c) for c in supports], options, model_options):
                self.c.r.error((*path, "supports", index), message)
        if "streaming" not in supports and (offers is None or "streaming" in offers):
            self.c.r.warning(
                (*path, "supports"),
                "'streaming' is not listed, so every streamed request skips this model; add it unless the model "
                "truly cannot stream",
            )
        return declared

    def _options(self, value: dict[str, Any], schema: Mapping[str, Any], path: Path) -> bool:
        """Validate options against a driver's schema, reporting each problem at its key; True when valid."""
        ok = True
        for error in jsonschema.Draft202012Validator(schema).iter_errors(value):
            ok = False
            where = (*path, *error.absolute_path)
            if self.c.r.has_error_within(where) or any(p[: len(where)] == where for p in self.c.r.error_paths):
                continue  # e.g. a credential-looking option, already reported at its key
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = list(_dict(error.schema.get("properties")))
                for extra in sorted(k for k in error.instance if k not in allowed):
                    hint = did_you_mean(extra, allowed) or f"; known options: {', '.join(allowed) or 'none'}"
                    self.c.r.error((*where, extra), f"unknown option '{extra}'{hint}", key=True)
            elif error.validator == "enum":
                choices = [str(v) for v in error.validator_value]
                got = error.instance
                self.c.r.error(
                    where, f"expected one of {', '.join(choices)}, got {got!r}{did_you_mean(str(got), choices)}"
                )
            else:
                self.c.r.error(where, error.message)
        return ok

    # -- routes ------------------------------------------------------------------------------------------------
    def _route(self, name: str, spec: dict[str, Any], capabilities: Mapping[str, frozenset[str] | None]) -> None:
        if spec.get("kind", "chat") != "chat":
            return  # streaming and continuation are chat matters
        models = [m for target in _strings(spec.get("chain")) for m in self.c._expand(target)]
        models = [m for m in models if _dict(self.c.models.get(m)).get("kind", "chat") == "chat"]
        if not models:
            return

        def can(model: str, capability: str) -> bool:
            offered = capabilities.get(model)
            return offered is None or capability in offered

        if not any(can(m, "streaming") for m in models):
            self.c.r.warning(
                ("routes", name, "chain"),
                "no model in this chain supports streaming: every streamed request to this route fails (503)",
            )
        mode = spec.get("mid_stream", _dict(self.c.data.get("defaults")).get("mid_stream"))
        if mode == "continue" and not any(can(m, "prefill") for m in models):
            where: Path = ("routes", name, "mid_stream") if "mid_stream" in spec else ("routes", name)
            self.c.r.warning(
                where,
                "mid_stream: continue, but no model in this chain supports prefill, so a cut stream always ends "
                "with an error (name a prefill dialect, or use mid_stream: restart)",
                key="mid_stream" not in spec,
            )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> Iterable[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
