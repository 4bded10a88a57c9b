"""The contract suite every target and store must pass.

Subclass :class:`TargetContract` in a test module and override one fixture::

    from flue_core.testing import TargetContract
    from flue_node_like import LocalTarget, SqliteStore

    class TestSqlite(TargetContract):
        @pytest.fixture
        def make_target(self, tmp_path):
            path = tmp_path / "flue.db"
            return lambda: LocalTarget(SqliteStore(path), shutdown_grace=0.2)

``make_target()`` must build a new, unopened target over the *same* storage each time it is called
(a second call is a restart of the process). Tests run on anyio's pytest plugin with asyncio.
"""

import pytest

pytest.register_assert_rewrite(
    "flue_core.testing.base",
    "flue_core.testing.admission",
    "flue_core.testing.lifecycle",
    "flue_core.testing.events",
    "flue_core.testing.inspection",
    "flue_core.testing.recovery",
    "flue_core.testing.rerun",
    "flue_core.testing.store",
    "flue_core.testing.waits",
    "flue_core.testing.signals",
    "flue_core.testing.children",
    "flue_core.testing.schedules",
    "flue_core.testing.store_waits",
    "flue_core.testing.values",
    "flue_core.testing.flow_store",
    "flue_core.testing.flow",
)

from flue_core.testing.admission import AdmissionContract  # noqa: E402
from flue_core.testing.events import EventsContract  # noqa: E402
from flue_core.testing.inspection import InspectionContract  # noqa: E402
from flue_core.testing.lifecycle import LifecycleContract  # noqa: E402
from flue_core.testing.recovery import RecoveryContract  # noqa: E402
from flue_core.testing.rerun import RerunContract  # noqa: E402
from flue_core.testing.store import StoreContract  # noqa: E402
from flue_core.testing.waits import WaitsContract  # noqa: E402
from flue_core.testing.signals import SignalsContract  # noqa: E402
from flue_core.testing.children import ChildrenContract  # noqa: E402
from flue_core.testing.schedules import SchedulesContract  # noqa: E402
from flue_core.testing.store_waits import StoreWaitsContract  # noqa: E402
from flue_core.testing.values import ValuesContract  # noqa: E402
from flue_core.testing.flow import FlowContract  # noqa: E402
from flue_core.testing.flow_store import FlowStoreContract  # noqa: E402


class TargetContract(
    AdmissionContract,
    LifecycleContract,
    EventsContract,
    InspectionContract,
    RecoveryContract,
    RerunContract,
    StoreContract,
    WaitsContract,
    SignalsContract,
    ChildrenContract,
    SchedulesContract,
    StoreWaitsContract,
    ValuesContract,
    FlowStoreContract,
    FlowContract,
):
    """Every contract test; subclass it and override ``make_target``."""


__all__ = ["TargetContract"]
