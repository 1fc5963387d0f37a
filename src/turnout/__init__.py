"""turnout: a config-driven LLM request router with fallback chains.

The public API is exactly `__all__` (sorted, checked by tests/test_public_api.py); everything else is internal.
"""

from turnout.config import Config
from turnout.drivers.base import CallContext, CredentialCheck, Driver, EmbeddingContext, ModelInfo
from turnout.drivers.registry import DriverRegistry
from turnout.embeddings import EmbeddingRequest, EmbeddingResponse
from turnout.errors import (
    AllUpstreamsFailed,
    BudgetExhausted,
    ClientRateLimited,
    ConfigError,
    ErrorClass,
    InvalidRequest,
    Problem,
    ProviderError,
    RequestRefused,
    RouteNotAllowed,
    RouteNotFound,
    TurnoutError,
    UnknownClient,
)
from turnout.events import (
    AttemptCharged,
    AttemptFailed,
    AttemptStarted,
    AttemptSucceeded,
    BreakerClosed,
    BreakerEvent,
    BreakerHalfOpened,
    BreakerOpened,
    BudgetWarning,
    ConversationUpdated,
    Event,
    FallbackTaken,
    LoggingObserver,
    Observer,
    RequestStarted,
    ResponseCompleted,
    RetryScheduled,
    StateDegraded,
    StateRecovered,
    StreamContinued,
)
from turnout.reasoning import Reasoning
from turnout.router.client import Router
from turnout.router.conversation import Conversation
from turnout.router.graph import DispatchGraph
from turnout.router.streaming import ChatStream
from turnout.state import UsageKey, UsageTotals
from turnout.types import (
    Attempt,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkBatch,
    NativeFrames,
    NativeRequest,
    Splice,
    Usage,
)

__all__ = [
    "AllUpstreamsFailed",
    "Attempt",
    "AttemptCharged",
    "AttemptFailed",
    "AttemptStarted",
    "AttemptSucceeded",
    "BreakerClosed",
    "BreakerEvent",
    "BreakerHalfOpened",
    "BreakerOpened",
    "BudgetExhausted",
    "BudgetWarning",
    "CallContext",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatStream",
    "ChunkBatch",
    "ClientRateLimited",
    "Config",
    "ConfigError",
    "Conversation",
    "ConversationUpdated",
    "CredentialCheck",
    "DispatchGraph",
    "Driver",
    "DriverRegistry",
    "EmbeddingContext",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "ErrorClass",
    "Event",
    "FallbackTaken",
    "InvalidRequest",
    "LoggingObserver",
    "ModelInfo",
    "NativeFrames",
    "NativeRequest",
    "Observer",
    "Problem",
    "ProviderError",
    "Reasoning",
    "RequestRefused",
    "RequestStarted",
    "ResponseCompleted",
    "RetryScheduled",
    "RouteNotAllowed",
    "RouteNotFound",
    "Router",
    "Splice",
    "StateDegraded",
    "StateRecovered",
    "StreamContinued",
    "TurnoutError",
    "UnknownClient",
    "Usage",
    "UsageKey",
    "UsageTotals",
]
