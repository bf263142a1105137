"""LLM clients shared by both papers: an OpenAI-compatible HTTP client (http), a local
Hugging Face client (local), and the response cache they both sit behind (cache)."""
