"""LLM access for agent runs: one provider interface (streaming, usage by token bucket), the providers
(mock, Gemini through google-genai, any OpenAI-compatible endpoint) and the fallback chain.

Nothing here imports a provider SDK at module import; each provider builds its client on first use.
"""
