"""jax-rmsprop: RMSProp for JAX done properly."""

from . import checkpoint as checkpoint
from . import compat as compat
from . import problems as problems
from . import report as report
from ._conventions import RMSPropState as RMSPropState
from ._faults import ProcessLost as ProcessLost
from ._fit import History as History
from ._fit import fit as fit
from ._flat import Flat as Flat
from ._flat import flatten as flatten
from ._pbt import PBTResult as PBTResult
from ._pbt import pbt as pbt
from ._quantized import QuantizedState as QuantizedState
from ._resume import CheckpointCorrupt as CheckpointCorrupt
from ._resume import CheckpointMismatch as CheckpointMismatch
from ._rmsprop import rmsprop as rmsprop
from ._rmsprop import scale_by_rms as scale_by_rms
from ._run import Trajectory as Trajectory
from ._run import run as run
from ._signals import FitInterrupted as FitInterrupted
from ._signals import Interrupted as Interrupted
from ._sweep import SweepResult as SweepResult
from ._sweep import sweep as sweep
from ._sweep_progress import SweepInterrupted as SweepInterrupted
from ._tune import tune as tune
from ._tune_result import TuneResult as TuneResult
from ._version import __version__ as __version__
from .problems import Task as Task

__all__ = [
    "CheckpointCorrupt",
    "CheckpointMismatch",
    "FitInterrupted",
    "Flat",
    "History",
    "Interrupted",
    "PBTResult",
    "ProcessLost",
    "QuantizedState",
    "RMSPropState",
    "SweepInterrupted",
    "SweepResult",
    "Task",
    "Trajectory",
    "TuneResult",
    "__version__",
    "checkpoint",
    "compat",
    "fit",
    "flatten",
    "pbt",
    "problems",
    "report",
    "rmsprop",
    "run",
    "scale_by_rms",
    "sweep",
    "tune",
]
