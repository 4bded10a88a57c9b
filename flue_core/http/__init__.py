"""The HTTP surface (Starlette): workflow admission, run reads, and the Durable Streams mount."""
