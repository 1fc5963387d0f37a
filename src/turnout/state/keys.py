"""Redis key names: every key of one `key_prefix` starts with the hash tag `{<key_prefix>}`.

Redis Cluster hashes only the text between the first `{` and the next `}`, so every key of a turnout deployment
lands in one slot and any script may touch any of them (a script's keys must share a slot). Several turnout
deployments with different prefixes spread over the cluster. The prefix holds no braces (the schema says so).

```
{p}w:<deployment>     sorted set: the rate window, member "<replica>:<grant>:<tokens>", score = admit time (us)
{p}wt:<deployment>    string: tokens counted in that window
{p}pr:<deployment>    sorted set: half-open probe leases, member "<replica>:<grant>", score = lease end (us)
{p}breakers           hash: deployment -> "state|until_us|trips|changed_us|origin"
{p}replicas           sorted set: replica -> last heartbeat (us); its size is the fallback share's divisor
{p}epoch              string: set once per dataset, so an empty restart is noticed
{p}u:d:<YYYY-MM-DD>   hash: "route|deployment|client|metric" -> counter (one per UTC day)
{p}u:m:<YYYY-MM>      hash: the same per month
{p}u:t                hash: the same, all time
{p}s:<period id>      hash: scope ("c:<client>", "r:<route>", "d:<deployment>") -> nano-USD spent in the period
                      (ids d:YYYY-MM-DD, w:YYYY-Www, m:YYYY-MM, t): what budgets read
{p}flush:<id>         string: a usage flush that was applied (so a retried flush never counts twice)
{p}resp:<id>          hash: a stored Responses API response (r, i, c, o, t: see `turnout.state.redis_responses`)
```
The breaker channel is `{p}breakers` too (channels are not keys; pub/sub reaches every cluster node).
"""

from __future__ import annotations

from collections.abc import Iterable


class Keys:
    """Key names under one prefix (see the module docstring)."""

    __slots__ = ("breakers", "channel", "epoch", "replicas", "tag", "usage_total")

    def __init__(self, prefix: str) -> None:
        self.tag = "{" + prefix + "}"
        self.breakers = self.tag + "breakers"
        self.channel = self.tag + "breakers"
        self.replicas = self.tag + "replicas"
        self.epoch = self.tag + "epoch"
        self.usage_total = self.tag + "u:t"

    def gate(self, deployment: str) -> tuple[str, str, str]:
        """(window, window tokens, probe leases) of one deployment."""
        return (f"{self.tag}w:{deployment}", f"{self.tag}wt:{deployment}", f"{self.tag}pr:{deployment}")

    def usage_day(self, day: str) -> str:
        return f"{self.tag}u:d:{day}"

    def usage_month(self, month: str) -> str:
        return f"{self.tag}u:m:{month}"

    def spend(self, period_id: str) -> str:
        return f"{self.tag}s:{period_id}"

    def flush_marker(self, flush_id: str) -> str:
        return f"{self.tag}flush:{flush_id}"

    def response(self, response_id: str) -> str:
        return f"{self.tag}resp:{response_id}"

    def all(self, deployments: Iterable[str] = ()) -> list[str]:
        """The fixed keys plus the gate keys of `deployments` (for tests and tools)."""
        out = [self.breakers, self.replicas, self.epoch, self.usage_total]
        for deployment in deployments:
            out += self.gate(deployment)
        return out


def usage_field(route: str, deployment: str, client: str, metric: str) -> str:
    """Names hold no "|" (the name rule), so it separates the parts unambiguously."""
    return f"{route}|{deployment}|{client}|{metric}"


def split_usage_field(field: str) -> tuple[str, str, str, str] | None:
    parts = field.split("|")
    if len(parts) != 4:
        return None
    return parts[0], parts[1], parts[2], parts[3]
