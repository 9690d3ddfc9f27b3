"""Sharding on 8 simulated host devices (a subprocess: XLA_FLAGS must precede importing JAX)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocess: 8 simulated devices

CONFIGS = ["plain", "centered_momentum", "bias_wd_bf16state"]
MODES = ["auto", "explicit"]


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    script = pathlib.Path(__file__).parents[1] / "scripts" / "sharded_checks.py"
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        CKPT_DIR=str(tmp_path_factory.mktemp("ckpt")),
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("FACTS "))
    return json.loads(line[len("FACTS ") :])


def test_eight_devices(facts):
    assert facts["devices"] == 8


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_jit_init_gives_each_state_leaf_its_params_sharding(facts, mode, config):
    same = facts[f"{mode}/{config}/init_same_sharding"]
    assert same and all(same.values()), same


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_compiled_step_has_no_collectives(facts, mode, config):
    assert facts[f"{mode}/{config}/collectives"] == []
    assert facts[f"{mode}/{config}/step_keeps_sharding"]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_restores_into_the_templates_shardings(facts, mode, config):
    assert facts[f"{mode}/{config}/restore_keeps_sharding"]
    assert facts[f"{mode}/{config}/restore_equal"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", ["quantized", "quantized4"])
def test_quantized_state_keeps_each_shards_blocks_its_own(facts, mode, key):
    """8-bit and 4-bit nu and trace of params whose last axis is split in shards of whole
    blocks: codes and block exponents sharded as their params (from ``jit(tx.init)`` too:
    a replicated exponent array could not be donated), and the numbers of the same steps
    on one device, bit for bit. The step's one collective is the all-zero blocks' row
    maximum over block exponents (an integer per row with JAX 0.10, the shard's block
    exponents with JAX 0.5.3: at most 128 here, against 32768 elements per leaf: no
    element's value crosses shards; at 4 bits the two codes of a byte are in one block,
    so on one shard)."""
    assert facts[f"{mode}/{key}/collectives"] in ([], ["all-reduce"])
    assert facts[f"{mode}/{key}/largest_collective"] <= 128
    assert facts[f"{mode}/{key}/sharded_as_params"]
    assert facts[f"{mode}/{key}/equal_to_one_device"]


def test_optax_init_replicates_on_an_auto_mesh(facts):
    """The trap we avoid: optax's jax.jit(tx.init) puts the whole state on every device."""
    assert facts["auto/optax_init_same_sharding"] is False


def test_sweep_config_axis_shards_over_the_mesh(facts):
    assert facts["sweep/shape"] == [10, 5]
    assert facts["sweep/max_abs_diff"] < 1e-9
    assert facts["sweep/carry_devices"] == 8
    assert facts["sweep/carry_shard_shape"] == [7, 2]  # 56 configs / 8 devices
