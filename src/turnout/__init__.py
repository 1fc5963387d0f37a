"""turnout: a config-driven LLM request router with fallback chains."""
