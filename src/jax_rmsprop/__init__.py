"""jax-rmsprop: RMSProp for JAX done properly."""

from . import checkpoint as checkpoint
from . import compat as compat
from . import flat as flat
from . import problems as problems
from ._run import Trajectory as Trajectory
from ._run import run as run
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep as sweep
from ._transform import RMSPropState as RMSPropState
from ._transform import rmsprop as rmsprop
from ._transform import scale_by_rms as scale_by_rms
from ._version import __version__ as __version__
from .flat import Flat as Flat
from .flat import flatten as flatten

__all__ = [
    "Flat",
    "flat",
    "flatten",
    "RMSPropState",
    "SweepResult",
    "Trajectory",
    "__version__",
    "checkpoint",
    "compat",
    "problems",
    "rmsprop",
    "run",
    "scale_by_rms",
    "sweep",
]
