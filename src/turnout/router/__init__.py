"""The routing engine: compile a Config into a DispatchGraph and dispatch requests through it."""

from turnout.router.client import Router
from turnout.router.compile import compile_graph
from turnout.router.conversation import Conversation
from turnout.router.graph import CompiledRoute, Deployment, DispatchGraph, Step
from turnout.router.health import HealthTable
from turnout.router.streaming import ChatStream

__all__ = [
    "ChatStream",
    "CompiledRoute",
    "Conversation",
    "Deployment",
    "DispatchGraph",
    "HealthTable",
    "Router",
    "Step",
    "compile_graph",
]
