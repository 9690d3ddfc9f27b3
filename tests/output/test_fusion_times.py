"""``scripts/fusion_times.py``: the per-fusion times ``bench/RESULTS.md`` quotes."""

import importlib.util
import pathlib

import jax_rmsprop

_SCRIPT = pathlib.Path(__file__).parents[2] / "scripts" / "fusion_times.py"


def test_fusion_times_names_the_quantized_steps_fusions():
    spec = importlib.util.spec_from_file_location("fusion_times", _SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    times = mod.fusion_times(jax_rmsprop.rmsprop(1e-3, state_bits=8), 64 * 1024, steps=2)
    fusions = {k: v for k, v in times.items() if not k.startswith("(")}
    # the update and the encoding at least, each a positive time, summed
    assert len(fusions) >= 2 and all(v > 0 for v in fusions.values())
    assert abs(times["(their sum)"] - sum(fusions.values())) < 1e-9
    assert list(fusions.values()) == sorted(fusions.values(), reverse=True)
