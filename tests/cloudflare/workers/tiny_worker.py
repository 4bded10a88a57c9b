"""The smallest Python Worker: answers every request, imports nothing but the SDK (a fast cold start
for the tests of the tooling's process handling)."""

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("tiny")
