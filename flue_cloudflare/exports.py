"""The Durable Object classes of the Cloudflare target, for a Worker's main module to export::

    from flue_cloudflare.exports import *  # noqa: F403 - the target's Durable Object classes

The Workers runtime finds an object class by the name ``wrangler.toml`` gives it among the main
module's names; exporting them all this way keeps an application right when the target adds one.
Only inside a Worker (the classes are made of the Workers runtime's ``DurableObject``).
"""

from flue_cloudflare.index_object import IndexObject
from flue_cloudflare.limit_object import LimitObject
from flue_cloudflare.run_object import RunObject
from flue_cloudflare.schedule_object import ScheduleObject
from flue_cloudflare.streams import StreamObject

__all__ = ["IndexObject", "LimitObject", "RunObject", "ScheduleObject", "StreamObject"]
