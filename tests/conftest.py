"""Fixtures every test module may use: a real redis-server (``redis_server``, ``redis_url``,
``own_redis_server``; see :mod:`flue_node_like.testing_redis`)."""

pytest_plugins = ["flue_node_like.testing_redis"]
