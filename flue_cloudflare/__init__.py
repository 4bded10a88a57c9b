"""The Cloudflare target (a Python Worker with one Durable Object per run). Not built yet."""
