"""The fused training program (make_train) on toy envs: purity, donation, compile-once, determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from toy_envs import CounterEnv, RandomLengthEnv

from mjx_tecrl.loop import make_train

pytestmark = pytest.mark.usefixtures("fast_compile")

NUM_ENVS = 4
WARMUP_ITERS = 8  # learning_starts 32 / num_envs 4
CHUNK_ITERS = 2  # eval_every 8 / num_envs 4
UPDATES_PER_ITER = 2
TERMINATE_AFTER = 3  # CounterEnv episodes end after 3 steps (time limit 5)


@pytest.fixture(scope="module")
def setup(tiny_config):
    # policy_delay 1: one update graph per block instead of two, which halves the compile time here
    config = tiny_config(
        learning_starts=32, updates_per_step=UPDATES_PER_ITER / NUM_ENVS, num_envs=NUM_ENVS, policy_delay=1
    )
    fns = make_train(config, CounterEnv(terminate_after=TERMINATE_AFTER))
    assert (fns.warmup_iters, fns.chunk_iters) == (WARMUP_ITERS, CHUNK_ITERS)
    init_jit = jax.jit(fns.init)  # the public init, jitted once (it re-jits its inner _init per call)
    warmup_jit = jax.jit(fns.warmup)
    chunk_jit = jax.jit(fns.run_chunk, donate_argnums=0)
    iteration_jit = jax.jit(fns.train_iteration)

    def warm(seed):
        """A fresh state after warm-up (new buffers every call: the chunk donates them)."""
        return warmup_jit(init_jit(jax.random.PRNGKey(seed)))[0]

    return dict(config=config, fns=fns, init=init_jit, warmup=warmup_jit, chunk=chunk_jit,
                iteration=iteration_jit, warm=warm)  # fmt: skip


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def assert_trees_close(a, b, rtol=1e-4, atol=1e-5):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(x, y)


def trees_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


def test_one_chunk_runs_and_counters_advance(setup):
    ts = setup["warm"](0)
    assert int(ts.iteration) == WARMUP_ITERS
    assert int(ts.replay.size) == WARMUP_ITERS * NUM_ENVS == int(ts.replay.insert_pos)
    ts, metrics = setup["chunk"](ts)
    metrics = _np(metrics)
    expected = {"train/loss_reward_critic", "train/loss_entropy_critic", "train/loss_actor", "train/alpha",
                "train/q_r", "train/q_e", "train/episodes", "train/episode_return", "train/episode_length"}  # fmt: skip
    assert expected <= set(metrics), expected - set(metrics)
    assert all(np.isfinite(v).all() for v in metrics.values()), metrics
    # iteration +1 and replay +num_envs per iteration; updates_per_iter gradient steps per iteration
    assert int(ts.iteration) == WARMUP_ITERS + CHUNK_ITERS
    assert int(ts.replay.size) == (WARMUP_ITERS + CHUNK_ITERS) * NUM_ENVS == int(ts.replay.insert_pos)
    assert int(ts.learner.step) == CHUNK_ITERS * UPDATES_PER_ITER
    # All envs started together: episodes end at iterations 3, 6, 9, so this chunk (9, 10) ends one each.
    assert metrics["train/episodes"] == NUM_ENVS
    assert metrics["train/episode_return"] == TERMINATE_AFTER
    assert metrics["diag/reward_abs_max"] == 1.0  # CounterEnv pays 1 per step
    assert metrics["train/episode_length"] == TERMINATE_AFTER
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(_np(ts.learner)))


class LeakyCounterEnv(CounterEnv):
    """A control: an env whose step prints from the device and calls back to the host."""

    def step(self, state, action):
        jax.debug.print("t={t}", t=state.t)
        jax.debug.callback(lambda t: None, state.t)
        return super().step(state, action)


# jax 0.10 lowers jax.debug.print to its own `debug_print` primitive (no "callback" in its name).
CALLBACK_MARKERS = ("callback", "pure_callback", "io_callback", "debug_callback", "debug_print", "outfeed")


def test_no_host_callback_in_the_programs(setup, tiny_config):
    fns, ts = setup["fns"], setup["warm"](0)
    programs = {
        "run_chunk": jax.make_jaxpr(fns.run_chunk)(ts),
        "warmup": jax.make_jaxpr(fns.warmup)(ts),
        "train": jax.make_jaxpr(lambda k: fns.train(k, 2))(jax.random.PRNGKey(0)),
    }
    for name, jaxpr in programs.items():
        text = str(jaxpr)
        assert "scan" in text  # nested programs are printed, so a callback inside would show
        found = [m for m in CALLBACK_MARKERS if m in text]
        assert not found, f"{name} holds {found}"
    # The check does see a print and a callback nested inside the env step inside the scan.
    leaky = make_train(setup["config"], LeakyCounterEnv(terminate_after=TERMINATE_AFTER))
    text = str(jax.make_jaxpr(leaky.run_chunk)(ts))
    assert "debug_print" in text and "debug_callback" in text


@pytest.fixture(scope="module")
def chunk_chain(setup):
    """Three consecutive chunks through ONE fresh donating jit, starting from init's output."""
    chunk = jax.jit(setup["fns"].run_chunk, donate_argnums=0)
    ts = setup["init"](jax.random.PRNGKey(3))
    kept, metrics = [], []
    for _ in range(3):
        leaves = jax.tree_util.tree_leaves_with_path(ts)
        assert ts.replay.data.obs.size and not ts.replay.data.obs.is_deleted()
        ts, m = chunk(ts)
        kept.append([jax.tree_util.keystr(path) for path, x in leaves if not x.is_deleted()])
        metrics.append(_np(m))
    return dict(ts=ts, kept=kept, metrics=metrics, cache_size=chunk._cache_size())


def test_chunk_donates_its_input_and_chains(chunk_chain):
    # every input buffer is consumed (e.g. ts.replay.data.obs; also those of the init output), and the
    # outputs are donated in turn without a "donate the same buffer twice" error
    for call, kept in enumerate(chunk_chain["kept"]):
        assert not kept, f"call {call}: input leaves not donated: {kept}"
    assert all(np.isfinite(v).all() for m in chunk_chain["metrics"] for v in m.values())
    assert int(chunk_chain["ts"].iteration) == 3 * CHUNK_ITERS


def test_chunk_compiles_once(chunk_chain):
    assert chunk_chain["cache_size"] == 1


def test_chunk_scan_equals_python_loop_of_iterations(setup):
    scanned, metrics = setup["chunk"](setup["warm"](2))
    looped = setup["warm"](2)
    per_iter = []
    for _ in range(CHUNK_ITERS):
        looped, (m, _) = setup["iteration"](looped)
        per_iter.append(_np(m))
    assert_trees_close(_np(scanned), _np(looped))
    assert trees_equal(scanned.key, looped.key) and int(scanned.iteration) == int(looped.iteration)
    for name in per_iter[0]:
        np.testing.assert_allclose(metrics[name], np.mean([m[name] for m in per_iter]), rtol=1e-4, atol=1e-5)


def test_chunk_of_fewer_iterations_runs_only_those(setup):
    """run_chunk(ts, 1) of a 2-iteration chunk: one iteration's state and metrics; the skipped one does nothing."""
    partial, metrics = setup["chunk"](setup["warm"](4), jnp.int32(1))
    one, (m, _) = setup["iteration"](setup["warm"](4))
    assert_trees_close(_np(partial), _np(one))
    assert trees_equal(partial.key, one.key) and int(partial.iteration) == int(one.iteration)
    assert int(partial.learner.step) == UPDATES_PER_ITER
    for name, v in _np(m).items():
        np.testing.assert_allclose(metrics[name], v, rtol=1e-5, atol=1e-6)


def test_the_warm_up_runs_in_the_chunk_program_with_its_own_random_streams(setup):
    """The warm-up is the chunk program in its warm mode (one copy of the physics per run): bit for bit the
    warm-up iterations on their own (a key split two ways, U[-1, 1] actions, no learner), and the training mode
    bit for bit a training iteration written out (a key split three ways, the policy's actions, the updates)."""
    fns = setup["fns"]
    assert fns.warmup_chunks() == [CHUNK_ITERS] * (WARMUP_ITERS // CHUNK_ITERS)
    ts0 = setup["init"](jax.random.PRNGKey(9))
    alone = jax.jit(lambda s: jax.lax.scan(fns.warmup_iteration, s, None, length=WARMUP_ITERS)[0])(ts0)
    warm, counts = setup["warmup"](ts0)
    assert jax.tree.structure(warm) == jax.tree.structure(alone)
    for x, y in zip(jax.tree.leaves(warm), jax.tree.leaves(alone), strict=True):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert set(counts) == {"train/episodes", "train/diverged_envs"} and float(counts["train/episodes"]) > 0

    def written_out(s):
        key, k_step, k_update = jax.random.split(s.key, 3)
        s, _, _ = fns._act_and_store(s.replace(key=key), k_step, random_actions=False)
        learner, _ = fns._updates(s.learner, s.replay, k_update)
        return s.replace(learner=learner)

    want = jax.jit(written_out)(warm)
    got, _ = jax.jit(fns.run_chunk)(warm, jnp.int32(1), jnp.bool_(False))
    assert trees_equal(got.key, want.key) and int(got.learner.step) == UPDATES_PER_ITER
    assert_trees_close(_np(got), _np(want))
    fresh, _ = jax.jit(fns.run_chunk)(warm, jnp.int32(1), jnp.bool_(True))  # warm mode: no update, no policy
    assert int(fresh.learner.step) == 0 and trees_equal(fresh.learner, warm.learner)


def test_same_seed_same_run_different_seed_different_run(setup):
    ts_a, m_a = setup["chunk"](setup["warm"](5))
    ts_b, m_b = setup["chunk"](setup["warm"](5))
    ts_c, m_c = setup["chunk"](setup["warm"](6))
    assert trees_equal(m_a, m_b) and trees_equal(ts_a, ts_b)
    assert m_a["train/loss_reward_critic"] != m_c["train/loss_reward_critic"]
    assert not trees_equal(ts_a.learner.actor_params, ts_c.learner.actor_params)
    assert not trees_equal(ts_a.replay.data.obs, ts_c.replay.data.obs)


def test_train_vmaps_over_keys_and_matches_single_runs(setup):
    fns, num_chunks = setup["fns"], 2
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    ts_v, m_v = jax.jit(jax.vmap(lambda k: fns.train(k, num_chunks)))(keys)
    assert m_v["train/loss_actor"].shape == (2, num_chunks)
    for i in range(2):
        ts, _ = setup["warmup"](setup["init"](keys[i]))
        chunks = []
        for _ in range(num_chunks):
            ts, m = setup["chunk"](ts)
            chunks.append(_np(m))
        assert_trees_close(_np(jax.tree.map(lambda x, i=i: x[i], ts_v)), _np(ts))
        for name in chunks[0]:
            np.testing.assert_allclose(m_v[name][i], [c[name] for c in chunks], rtol=1e-4, atol=1e-5)
    assert not trees_equal(ts_v.learner.actor_params, jax.tree.map(lambda x: x[::-1], ts_v.learner.actor_params))


def test_warmup_is_uniform_random_and_does_not_learn(setup):
    ts0 = setup["init"](jax.random.PRNGKey(11))
    ts, stats = setup["warmup"](ts0)
    assert int(ts.learner.step) == 0
    assert trees_equal(ts.learner, ts0.learner)  # no gradient step, no target update, same alpha
    assert int(ts.iteration) == WARMUP_ITERS and int(ts.replay.size) == WARMUP_ITERS * NUM_ENVS
    actions = np.asarray(ts.replay.data.action[: WARMUP_ITERS * NUM_ENVS]).ravel()
    assert np.all(actions >= -1.0) and np.all(actions <= 1.0)
    assert actions.min() < -0.5 and actions.max() > 0.5
    assert 0.3 < np.mean(np.abs(actions)) < 0.7  # U[-1, 1]: E|a| = 0.5, 32 draws
    assert len(np.unique(actions)) == actions.size
    np.testing.assert_array_equal(np.asarray(ts.replay.data.reward[: WARMUP_ITERS * NUM_ENVS]), 1.0)
    # The actions ignore the actor: another actor gives the same warm-up, but not the same policy step.
    other = ts0.replace(
        learner=ts0.learner.replace(actor_params=jax.tree.map(lambda p: 3.0 * p + 0.5, ts0.learner.actor_params))
    )
    ts_other, _ = setup["warmup"](other)
    np.testing.assert_array_equal(np.asarray(ts_other.replay.data.action), np.asarray(ts.replay.data.action))
    step_a, _ = setup["iteration"](ts0)
    step_b, _ = setup["iteration"](other)
    assert not np.array_equal(np.asarray(step_a.replay.data.action[:NUM_ENVS]),
                              np.asarray(step_b.replay.data.action[:NUM_ENVS]))  # fmt: skip


@pytest.mark.parametrize("terminate_after, episode_length", [(3, 5), (0, 4), (5, 5)])
def test_evaluate_counter_env(setup, tiny_config, terminate_after, episode_length):
    config = tiny_config(episode_length=episode_length, num_eval_envs=3)
    fns = make_train(config, CounterEnv(terminate_after=terminate_after))
    learner = setup["init"](jax.random.PRNGKey(0)).learner  # same networks: obs 2, action 1
    out = _np(jax.jit(fns.evaluate)(learner, jax.random.PRNGKey(1)))
    expected = min(terminate_after, episode_length) if terminate_after else episode_length
    assert set(out) == {"eval/episode_return", "eval/episode_return_std", "eval/episode_return_min",
                        "eval/episode_return_max", "eval/episode_length", "eval/diverged_episodes"}  # fmt: skip
    assert out["eval/diverged_episodes"] == 0.0
    assert out["eval/episode_return"] == expected  # reward 1 per step
    assert out["eval/episode_length"] == expected
    assert out["eval/episode_return_min"] == expected == out["eval/episode_return_max"]
    assert out["eval/episode_return_std"] == 0.0


def test_evaluate_statistics_over_unequal_episodes(setup, tiny_config):
    n, limit = 8, 3
    env = RandomLengthEnv(max_length=5)
    fns = make_train(tiny_config(episode_length=limit, num_eval_envs=n), env)
    learner = setup["init"](jax.random.PRNGKey(0)).learner
    key = jax.random.PRNGKey(4)
    out = _np(jax.jit(fns.evaluate)(learner, key))
    # evaluate resets its n envs with split(key, n): recover each episode's own length
    lengths = np.minimum(np.asarray(jax.vmap(env.reset)(jax.random.split(key, n)).episode_id), limit)
    returns = 0.5 * lengths
    assert returns.std() > 0  # the case is not degenerate
    np.testing.assert_allclose(out["eval/episode_length"], lengths.mean(), rtol=1e-6)
    np.testing.assert_allclose(out["eval/episode_return"], returns.mean(), rtol=1e-6)
    np.testing.assert_allclose(out["eval/episode_return_std"], returns.std(), rtol=1e-5)
    assert out["eval/episode_return_min"] == returns.min() and out["eval/episode_return_max"] == returns.max()


def test_the_parallel_recipes_options_together_run_a_chunk(tiny_config):
    """--buffer-per-env, LayerNorm in actor and critics, bfloat16 matmuls, AdamW, n-step, observation
    normalisation and a gamma other than 0.99 compose in the one fused program: finite, float32 state, the buffer
    sized per env, and the decay acting (weights shrink against the same run without it)."""
    options = dict(buffer_per_env=16, actor_layer_norm=True, critic_layer_norm=True, matmul_dtype="bfloat16",
                   n_step=3, normalize_obs=True, gamma=0.97, learning_starts=16, policy_delay=1)  # fmt: skip
    norms = {}
    for wd in (0.0, 0.5):
        fns = make_train(tiny_config(weight_decay=wd, **options), CounterEnv(terminate_after=TERMINATE_AFTER))
        ts, _ = jax.jit(fns.warmup)(jax.jit(fns.init)(jax.random.PRNGKey(0)))
        assert ts.replay.data.obs.shape[0] == 16 * fns.config.num_envs
        ts, metrics = jax.jit(fns.run_chunk)(ts)
        assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values()), metrics
        assert {x.dtype for x in jax.tree.leaves(ts.learner) if jnp.issubdtype(x.dtype, jnp.floating)} == {
            jnp.dtype(jnp.float32)
        }
        assert float(metrics["diag/n_step_mean"]) > 1.0
        norms[wd] = float(sum(jnp.sum(x**2) for x in jax.tree.leaves(ts.learner.reward_critic_params)))
    assert norms[0.5] < norms[0.0]
