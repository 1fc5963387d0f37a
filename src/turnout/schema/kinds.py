"""Load-time checks for what routes serve: route and model kinds, embeddings dimensions, and route aliases.

A route serves one kind of request, chat or embeddings, and every model its chain reaches must be of that kind.
An embeddings route's deployments must all return vectors of the same length: a fallback to a model that returns
another length would answer with vectors of another space, which silently corrupts any index built from them.
(The same length is necessary, not sufficient: chain deployments of one model, e.g. on OpenAI and Azure.) A pool
is a set of fallbacks too, so its members obey the same two rules wherever it is used.

Aliases are further names for a route. They share one namespace with route names, so each is unique across the
file and none is the name of a route: a client's `model` must always resolve to exactly one route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnout.config import KINDS
from turnout.schema.problems import Path

if TYPE_CHECKING:
    from turnout.schema.checks import Checker

STREAM_ONLY_KEYS = ("first_token_timeout", "stall_timeout", "mid_stream", "restart_buffer")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class KindChecks:
    """The kind, dimension and alias checks over a `Checker`'s data and reporter."""

    def __init__(self, checker: Checker) -> None:
        self.c = checker

    def run(self) -> None:
        for name, spec in self.c.models.items():
            self._model(name, _dict(spec))
        for name, spec in self.c.pools.items():
            self._pool(name, _dict(spec))
        for name, spec in self.c.routes.items():
            self._route(name, _dict(spec))
        self._aliases()

    # -- what one model is ---------------------------------------------------------------------------------------
    def kind_of(self, model: str) -> str:
        kind = _dict(self.c.models.get(model)).get("kind", "chat")
        return kind if isinstance(kind, str) else "chat"

    def dimensions_of(self, model: str) -> int | None:
        value = _dict(self.c.models.get(model)).get("dimensions")
        return value if _is_int(value) else None

    def _model(self, name: str, spec: dict[str, Any]) -> None:
        path: Path = ("models", name)
        if spec.get("kind", "chat") == "embeddings":
            if "dimensions" not in spec:
                self.c.r.error(
                    (*path, "kind"),
                    "an embeddings model must declare dimensions: the length of the vectors it returns",
                )
            if "supports" in spec:
                self.c.r.error(
                    (*path, "supports"),
                    "supports lists chat capabilities; an embeddings model has none (remove it)",
                    key=True,
                )
            if "max_output_tokens" in spec:
                self.c.r.error(
                    (*path, "max_output_tokens"), "an embeddings model produces no output tokens (remove it)", key=True
                )
            low, high = spec.get("min_dimensions"), spec.get("dimensions")
            if _is_int(low) and _is_int(high) and low > high:
                self.c.r.error((*path, "min_dimensions"), f"min_dimensions ({low}) exceeds dimensions ({high})")
            return
        for key in ("dimensions", "min_dimensions"):
            if key in spec:
                self.c.r.error(
                    (*path, key), f"{key} applies to embeddings models; add kind: embeddings to this model", key=True
                )
        price = spec.get("price")
        if isinstance(price, dict) and "output" not in price:
            self.c.r.error((*path, "price"), "missing required key 'output'")

    # -- pools ---------------------------------------------------------------------------------------------------
    def _pool(self, name: str, spec: dict[str, Any]) -> None:
        """Every member of one kind; an embeddings pool's members of one length."""
        first: tuple[int, str] | None = None
        for i, member in enumerate(_list(spec.get("members"))):
            model = member if isinstance(member, str) else _dict(member).get("model")
            if not isinstance(model, str) or model not in self.c.models:
                continue
            where: Path = (
                ("pools", name, "members", i) if isinstance(member, str) else ("pools", name, "members", i, "model")
            )
            if first is None:
                first = (i, model)
                continue
            index, head = first
            if self.kind_of(model) != self.kind_of(head):
                self.c.r.error(
                    where,
                    f"'{model}' is {_a(self.kind_of(model))} model but '{head}' (members[{index}]) is "
                    f"{_a(self.kind_of(head))} model: a pool serves one kind of request",
                )
            elif self.kind_of(model) == "embeddings":
                self._same_length(where, model, head, f"members[{index}]")

    def _same_length(self, where: Path, model: str, head: str, head_at: str) -> bool:
        mine, theirs = self.dimensions_of(model), self.dimensions_of(head)
        if mine is None or theirs is None or mine == theirs:
            return True
        self.c.r.error(
            where,
            f"'{model}' returns {mine}-dimension vectors but '{head}' ({head_at}) returns {theirs}: a fallback "
            "must return vectors of the same space, so every deployment here needs the same dimensions",
        )
        return False

    # -- routes --------------------------------------------------------------------------------------------------
    def _route(self, name: str, spec: dict[str, Any]) -> None:
        path: Path = ("routes", name)
        kind = spec.get("kind", "chat")
        if kind not in KINDS:  # the schema reports it
            return
        first: tuple[int, str] | None = None  # the embeddings route's first model: the length all must match
        for i, target in enumerate(_list(spec.get("chain"))):
            if not isinstance(target, str):
                continue
            models = self.c._expand(target)
            wrong = [m for m in models if self.kind_of(m) != kind]
            if wrong:
                if target not in self.c.pools or not self._pool_has_error(target):
                    self.c.r.error((*path, "chain", i), self._wrong_kind(target, wrong[0], kind))
                continue
            if kind != "embeddings" or not models:
                continue
            if first is None:
                first = (i, models[0])
            elif target not in self.c.pools or not self._pool_has_error(target):
                self._same_length((*path, "chain", i), models[0], first[1], f"chain[{first[0]}]")
        if kind == "embeddings":
            self._embeddings_route(path, spec)

    def _pool_has_error(self, pool: str) -> bool:
        return any(p[:2] == ("pools", pool) for p in self.c.r.error_paths)

    def _wrong_kind(self, target: str, model: str, kind: str) -> str:
        what = f"model '{target}'" if target == model else f"pool '{target}' holds '{model}', which"
        if kind == "embeddings":
            return f"{what} is a chat model, but this route is kind: embeddings"
        return f"{what} is an embeddings model: a route that chains it needs kind: embeddings"

    def _embeddings_route(self, path: Path, spec: dict[str, Any]) -> None:
        if "requires" in spec:
            self.c.r.error(
                (*path, "requires"), "requires names chat capabilities; an embeddings route has none", key=True
            )
        for key in STREAM_ONLY_KEYS:
            if key in spec:
                self.c.r.warning(
                    (*path, key), f"{key} has no effect on an embeddings route (it never streams)", key=True
                )

    # -- aliases -------------------------------------------------------------------------------------------------
    def _aliases(self) -> None:
        """Aliases share the routes' namespace: unique across the file, never the name of a route."""
        seen: dict[str, tuple[str, int]] = {}
        for name, spec in self.c.routes.items():
            for i, alias in enumerate(_list(_dict(spec).get("aliases"))):
                if not isinstance(alias, str):
                    continue
                where: Path = ("routes", name, "aliases", i)
                if alias in self.c.routes:
                    self.c.r.error(where, f"'{alias}' is the name of a route; an alias must name no other route")
                elif alias in seen and seen[alias][0] != name:
                    owner, index = seen[alias]
                    self.c.r.error(
                        where, f"'{alias}' is already an alias of route '{owner}' (routes.{owner}.aliases[{index}])"
                    )
                else:
                    seen.setdefault(alias, (name, i))


def _a(kind: str) -> str:
    return "an embeddings" if kind == "embeddings" else "a chat"
