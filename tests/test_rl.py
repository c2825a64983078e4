"Bad inputs and edge cases of fm_course.rl that the notebook (nbs/80_rl.ipynb) does not run."
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from fm_course.rl import (DQNConfig, DQNResult, backward_induction, bellman_optimality, check_expected_sarsa_target, dqn_target,
                          greedy_returns, linear_schedule, mdp_arrays, plot_greedy_policy, policy_return, q_learning, sarsa,
                          train_dqn, value_iteration)
from fm_course.train import History


def chain_mdp():
    "Two states; action 1 in state 0 moves to state 1, where any action ends the episode with reward 1."
    return {0: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 0.0, False)]},
            1: {0: [(1.0, 1, 1.0, True)], 1: [(1.0, 1, 1.0, True)]}}


def tiny_dqn(**kw):
    "A DQN run of seconds on the CPU: 600 env steps, updates from step 200 in bursts of 5 every 100 steps."
    return DQNConfig(**{**dict(seed=0, total_steps=600, learning_starts=200, train_freq=100, gradient_steps=5, eval_every=300,
                              eval_episodes=2, device='cpu'), **kw})


# --- exact dynamic programming ---------------------------------------------------------------------------------------

def test_value_iteration_closed_form_and_fixed_point():
    Q = value_iteration(chain_mdp(), 0.9)
    np.testing.assert_allclose(Q, [[0.81, 0.9], [1.0, 1.0]], atol=1e-9)   # Q*(1,.) = 1, Q*(0,1) = 0.9, Q*(0,0) = 0.81
    T, R = mdp_arrays(chain_mdp())
    np.testing.assert_allclose(bellman_optimality(Q, T, R, 0.9), Q, atol=1e-9)
    np.testing.assert_allclose(value_iteration(chain_mdp(), 0.0), R)       # gamma = 0: Q* is the immediate reward


@pytest.mark.parametrize('gamma', [1.0, 1.5, -0.1])
def test_gamma_out_of_range_is_a_value_error_naming_gamma(gamma):
    lake = gym.make('FrozenLake-v1')
    with pytest.raises(ValueError, match='gamma'): value_iteration(chain_mdp(), gamma)
    with pytest.raises(ValueError, match='gamma'): sarsa(lake, 1, alpha=0.5, gamma=gamma, epsilon=0.1, seed=0)
    with pytest.raises(ValueError, match='gamma'): dqn_target(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), gamma)
    if gamma != 1.0:   # 1.0 is the notebook's case for these two
        with pytest.raises(ValueError, match='gamma'): q_learning(lake, 1, alpha=0.5, gamma=gamma, epsilon=0.1, seed=0)
        with pytest.raises(ValueError, match='DQNConfig.gamma'): DQNConfig(gamma=gamma)


@pytest.mark.parametrize('gamma', ['0.9', True, None])
def test_gamma_of_the_wrong_type_is_a_type_error_naming_gamma(gamma):
    lake = gym.make('FrozenLake-v1')
    with pytest.raises(TypeError, match='gamma'): value_iteration(chain_mdp(), gamma)
    with pytest.raises(TypeError, match='gamma'): q_learning(lake, 1, alpha=0.5, gamma=gamma, epsilon=0.1, seed=0)
    with pytest.raises(TypeError, match='DQNConfig.gamma'): DQNConfig(gamma=gamma)
    with pytest.raises(TypeError, match='gamma'): dqn_target(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), gamma)


def test_bellman_operator_allows_gamma_one_only():
    T, R = mdp_arrays(chain_mdp())
    np.testing.assert_allclose(bellman_optimality(np.ones((2, 2)), T, R, 1.0), [[1.0, 1.0], [1.0, 1.0]])   # finite-horizon sums
    with pytest.raises(ValueError, match='gamma'): bellman_optimality(np.ones((2, 2)), T, R, 1.01)


def test_value_iteration_bad_tol_max_iter_and_no_convergence():
    with pytest.raises(ValueError, match='tol'): value_iteration(chain_mdp(), 0.9, tol=0)
    with pytest.raises(TypeError, match='max_iter'): value_iteration(chain_mdp(), 0.9, max_iter=2.0)
    with pytest.raises(RuntimeError, match='did not reach tol'): value_iteration(chain_mdp(), 0.9, max_iter=1)


def test_mdp_table_checks():
    with pytest.raises(TypeError, match='P must be a non-empty dict'): mdp_arrays([])
    with pytest.raises(TypeError, match='P must be a non-empty dict'): mdp_arrays({})
    bad = chain_mdp(); bad[0][0] = [(0.5, 0, 0.0, False)]
    with pytest.raises(ValueError, match=r'P\[0\]\[0\]'): mdp_arrays(bad)
    bad = chain_mdp(); del bad[1][1]
    with pytest.raises(ValueError, match=r'P\[1\] has 1 actions'): mdp_arrays(bad)
    with pytest.raises(ValueError, match="P's states"): mdp_arrays({0: chain_mdp()[0], 2: chain_mdp()[1]})


def test_policy_return_values_and_bad_arguments():
    P = chain_mdp()
    assert policy_return(P, np.array([1, 0]), 2) == 1.0 and policy_return(P, np.array([1, 0]), 1) == 0.0   # needs two steps
    assert policy_return(P, np.array([0, 0]), 50) == 0.0 and policy_return(P, np.array([0, 0]), 1, start_state=1) == 1.0
    with pytest.raises(ValueError, match='policy'): policy_return(P, np.array([1]), 10)
    with pytest.raises(ValueError, match='policy'): policy_return(P, np.array([1.0, 0.0]), 10)
    with pytest.raises(ValueError, match='horizon'): policy_return(P, np.array([1, 0]), 0)
    with pytest.raises(TypeError, match='horizon'): policy_return(P, np.array([1, 0]), 2.5)
    with pytest.raises(ValueError, match='start_state'): policy_return(P, np.array([1, 0]), 2, start_state=2)


def test_backward_induction_values_policy_and_bad_arguments():
    V, pi = backward_induction(chain_mdp(), 1)
    np.testing.assert_array_equal(V, [0.0, 1.0])   # one step: only state 1 can still collect its reward
    V, pi = backward_induction(chain_mdp(), 3)
    np.testing.assert_array_equal(V, [1.0, 1.0])
    assert pi.shape == (3, 2) and pi.dtype == np.int64 and pi[1, 0] == 1   # with two steps left state 0 must move (with three, waiting once ties)
    V, _ = backward_induction(chain_mdp(), 3, gamma=0.5)
    np.testing.assert_allclose(V, [0.5, 1.0])                      # the reward arrives one step later, discounted once
    for h in (1, 2, 5):                                            # the finite-horizon optimum bounds every stationary policy
        V, _ = backward_induction(chain_mdp(), h)
        assert all(V[0] >= policy_return(chain_mdp(), np.array([a0, a1]), h) for a0 in (0, 1) for a1 in (0, 1))
    with pytest.raises(ValueError, match='horizon'): backward_induction(chain_mdp(), 0)
    with pytest.raises(TypeError, match='horizon'): backward_induction(chain_mdp(), 2.0)
    with pytest.raises(ValueError, match='gamma'): backward_induction(chain_mdp(), 2, gamma=1.5)
    with pytest.raises(TypeError, match='P must be'): backward_induction([], 2)


# --- tabular TD control ----------------------------------------------------------------------------------------------

def test_tabular_methods_need_a_discrete_gymnasium_env():
    with pytest.raises(TypeError, match='observation_space'): q_learning(gym.make('CartPole-v1'), 1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)
    with pytest.raises(TypeError, match='observation_space'): sarsa(gym.make('MountainCarContinuous-v0'), 1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)
    with pytest.raises(TypeError, match='env'): q_learning('FrozenLake-v1', 1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)


@pytest.mark.parametrize('kw, exc, name', [
    (dict(alpha='0.5'), TypeError, 'alpha'), (dict(alpha=1.5), ValueError, 'alpha'), (dict(alpha=None), TypeError, 'alpha'),
    (dict(epsilon=1.5), ValueError, 'epsilon'), (dict(epsilon=-0.1), ValueError, 'epsilon'), (dict(epsilon=[0.1]), TypeError, 'epsilon'),
    (dict(n_episodes=0), ValueError, 'n_episodes'), (dict(n_episodes=2.0), TypeError, 'n_episodes'),
    (dict(seed='0'), TypeError, 'seed')])
def test_tabular_bad_schedules_counts_and_seeds(kw, exc, name):
    args = dict(n_episodes=1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0) | kw
    for fn in (q_learning, sarsa):
        with pytest.raises(exc, match=name): fn(gym.make('FrozenLake-v1'), **args)


def test_tabular_closed_bounds_callable_schedules_and_seeds():
    lake = gym.make('FrozenLake-v1', is_slippery=False)
    Q, ret = sarsa(lake, 5, alpha=1.0, gamma=0.0, epsilon=0.0, seed=0)   # the closed ends of alpha's and epsilon's ranges
    assert Q.shape == (16, 4) and ret.shape == (5,)
    Q, ret = q_learning(lake, 50, alpha=lambda e: 0.5, gamma=0.9, epsilon=lambda e: 1.0 - e / 50, seed=3)
    Q2, ret2 = q_learning(lake, 50, alpha=lambda e: 0.5, gamma=0.9, epsilon=lambda e: 1.0 - e / 50, seed=np.int64(3))
    np.testing.assert_array_equal(Q, Q2); np.testing.assert_array_equal(ret, ret2)   # same seed, same table
    assert set(np.unique(ret)) <= {0.0, 1.0}
    Q3, _ = q_learning(lake, 5, alpha=0.5, gamma=0.9, epsilon=0.5, seed=None)      # fresh entropy is allowed
    assert Q3.shape == (16, 4)


# --- DQN -------------------------------------------------------------------------------------------------------------

def test_dqn_target_shapes_bool_dones_and_gamma_zero():
    with pytest.raises(ValueError, match=r'reward and terminated \[B\]'): dqn_target(torch.zeros(3), torch.zeros(2), torch.zeros(3, 2), 0.9)
    with pytest.raises(ValueError, match=r'q_next_target \[B, A\]'): dqn_target(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.9)
    with pytest.raises(ValueError, match='q_next_online'): dqn_target(torch.zeros(3), torch.zeros(3), torch.zeros(3, 2), 0.9, torch.zeros(3, 4))
    r, q_next = torch.tensor([1.0, 2.0]), torch.tensor([[3.0, 4.0], [5.0, 6.0]])
    d_float, d_bool = torch.tensor([0.0, 1.0]), torch.tensor([False, True])
    torch.testing.assert_close(dqn_target(r, d_bool, q_next, 0.5), dqn_target(r, d_float, q_next, 0.5))
    torch.testing.assert_close(dqn_target(r, d_float, q_next, 0.0), r)   # gamma = 0: the immediate reward only


@pytest.mark.parametrize('kw, exc, name', [
    (dict(buffer_size=0), ValueError, 'DQNConfig.buffer_size'), (dict(total_steps=1.5), TypeError, 'DQNConfig.total_steps'),
    (dict(learning_starts=-1), ValueError, 'DQNConfig.learning_starts'), (dict(gradient_steps=True), TypeError, 'DQNConfig.gradient_steps'),
    (dict(tau=0.0), ValueError, 'DQNConfig.tau'), (dict(tau=1.5), ValueError, 'DQNConfig.tau'),
    (dict(eps_end=2.0), ValueError, 'DQNConfig.eps_end'), (dict(exploration_fraction=-0.1), ValueError, 'DQNConfig.exploration_fraction'),
    (dict(final_lr_fraction=1.1), ValueError, 'DQNConfig.final_lr_fraction'), (dict(learning_rate=0.0), ValueError, 'DQNConfig.learning_rate'),
    (dict(max_grad_norm=-1.0), ValueError, 'DQNConfig.max_grad_norm'), (dict(hidden=()), ValueError, 'DQNConfig.hidden'),
    (dict(hidden=256), TypeError, 'DQNConfig.hidden'), (dict(hidden=(256, 0)), ValueError, r'DQNConfig.hidden\[1\]'),
    (dict(hidden=(256, 2.5)), TypeError, r'DQNConfig.hidden\[1\]'), (dict(double_dqn='yes'), TypeError, 'DQNConfig.double_dqn'),
    (dict(seed=None), TypeError, 'DQNConfig.seed'), (dict(env_id=3), TypeError, 'DQNConfig.env_id'),
    (dict(device=0), TypeError, 'DQNConfig.device')])
def test_dqn_config_bad_values(kw, exc, name):
    with pytest.raises(exc, match=name): DQNConfig(**kw)


def test_dqn_config_edges_accepted():
    c = DQNConfig(hidden=[8], learning_starts=0, gradient_steps=0, max_grad_norm=0, exploration_fraction=0.0, device=torch.device('cpu'))
    assert c.hidden == (8,)   # a list becomes a tuple
    assert type(DQNConfig(seed=np.int64(1)).seed) is int   # gymnasium's reset takes Python ints only


def test_linear_schedule_edges_and_bad_arguments():
    assert linear_schedule(0.0, 1.0, 10, 5) == 0.5 and linear_schedule(0.0, 1.0, 10, 99) == 1.0   # rising schedules work too
    assert linear_schedule(1.0, 0.1, 0, 0) == 0.1                                                  # duration 0: `end` at once
    with pytest.raises(ValueError, match='t must'): linear_schedule(1.0, 0.1, 10, -1)
    with pytest.raises(ValueError, match='duration'): linear_schedule(1.0, 0.1, -5, 0)
    with pytest.raises(TypeError, match='start'): linear_schedule('1', 0.1, 10, 0)
    with pytest.raises(TypeError, match='end'): linear_schedule(1.0, None, 10, 0)


def test_train_dqn_result_history_and_reproducibility():
    cfg = tiny_dqn()
    res = train_dqn(cfg)
    assert isinstance(res, DQNResult) and isinstance(res.history, History) and isinstance(res.model, torch.nn.Module)
    assert not res.model.training
    assert res.history['step'] == [300, 600]
    assert all(set(row) == {'step', 'seconds', 'eval_seconds', 'mean_return', 'td_loss', 'q_mean', 'lr'} for row in res.history)
    assert res.history[0]['seconds'] <= res.history[1]['seconds'] <= res.seconds
    assert 0 < res.history[0]['eval_seconds'] <= res.history[1]['eval_seconds'] < res.history[1]['seconds']   # cumulative, part of seconds
    assert (res.steps_to_solve is None) == (res.seconds_to_solve is None)
    assert res.final_return == res.history['mean_return'][-1] and len(res.episode_returns) > 0
    assert np.isfinite(res.history['td_loss']).all()
    again = train_dqn(cfg)
    assert again.history['mean_return'] == res.history['mean_return'] and again.episode_returns == res.episode_returns
    assert all(torch.equal(p, p2) for p, p2 in zip(res.model.parameters(), again.model.parameters()))   # same seed, same weights


def test_dqn_result_deprecated_aliases_warn_and_return_the_new_fields():
    res = DQNResult(config=DQNConfig(), model=torch.nn.Linear(4, 2), history=History([{'step': 1, 'mean_return': 9.0}]))
    with pytest.warns(DeprecationWarning, match='history'): assert res.evals is res.history.rows
    with pytest.warns(DeprecationWarning, match='model'): assert res.q_network is res.model
    assert res.final_return == 9.0 and np.isnan(DQNResult(config=DQNConfig()).final_return)


def test_train_dqn_learning_rate_reaches_its_final_value_exactly_at_the_last_update():
    # bursts of 5 updates at steps 200, 300, ..., 600 and a partial burst at 650: 30 updates in all
    cfg = tiny_dqn(total_steps=650, eval_every=100, eval_episodes=1, learning_rate=1e-3, final_lr_fraction=0.0)
    lrs = train_dqn(cfg).history['lr']
    done = [0, 5, 10, 15, 20, 25, 30]   # updates taken by the evaluations at steps 100, ..., 600, 650
    np.testing.assert_allclose(lrs, [1e-3 * (1 - u / 30) for u in done], rtol=1e-12, atol=1e-15)
    assert all(lr > 0 for lr in lrs[:-1]) and lrs[-1] == 0.0   # no burst runs at lr 0
    lrs = train_dqn(tiny_dqn(total_steps=400, eval_every=400, eval_episodes=1, final_lr_fraction=0.25, learning_rate=1e-3)).history['lr']
    np.testing.assert_allclose(lrs, [0.25e-3])


def test_train_dqn_every_update_runs_at_the_scheduled_rate_and_the_last_one_above_zero():
    used = []   # the learning rate each optimizer step runs with, read just before the step
    hook = register_optimizer_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]['lr']))
    try:
        train_dqn(tiny_dqn(total_steps=650, learning_rate=1e-3, final_lr_fraction=0.0))
        n = 30   # bursts of 5 updates at steps 200, 300, ..., 600 and a partial one at 650
        np.testing.assert_allclose(used, [1e-3 * (1 - k / n) for k in range(n)], rtol=1e-12)
        assert used[-1] == pytest.approx(1e-3 / n) and min(used) > 0   # the last update still learns
        used.clear()
        train_dqn(tiny_dqn(total_steps=600, learning_rate=1e-3, final_lr_fraction=0.5))
        n = 25
        np.testing.assert_allclose(used, [1e-3 * (1 - 0.5 * k / n) for k in range(n)], rtol=1e-12)
    finally:
        hook.remove()


def test_benchmark_gives_sb3_train_dqns_mean_rate_per_burst():
    "tools/bench_dqn.py's SB3 schedule: the burst SB3 starts at env step t runs at the mean of train_dqn's rates over the same burst."
    from bench_dqn import MatchedLinearLR, burst_steps
    used = []
    hook = register_optimizer_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]['lr']))
    try: train_dqn(tiny_dqn(total_steps=650, learning_rate=1e-3))   # bursts of 5 at steps 200, ..., 600 and 650
    finally: hook.remove()
    bursts = burst_steps(650, 100, 200)
    assert bursts == [200, 300, 400, 500, 600, 650] and len(used) == 5 * len(bursts)
    sched = MatchedLinearLR(1e-3, 650, 100, 200, 5)
    # SB3 trains when t is a multiple of train_freq, and the benchmark runs the last, partial burst one step before
    # SB3 would store transition 650 (progress still 1 - 649/650)
    sb3_t = [*bursts[:-1], 649]
    np.testing.assert_allclose([sched(1 - t / 650) for t in sb3_t], np.reshape(used, (-1, 5)).mean(1), rtol=1e-12)


def test_benchmark_statistics_count_unsolved_runs_as_infinite():
    from bench_dqn import bootstrap_ci, iqm
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == 4.5                          # mean of the middle half, 3..6
    assert iqm([1, 2, 3, 4, 5, 6, float('inf'), float('inf')]) == 4.5   # infs outside the middle half
    assert iqm([1, 2, float('inf')] * 2) == float('inf')
    lo, hi = bootstrap_ci([10.0] * 5, np.median)
    assert lo == hi == 10.0
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0], np.median, y=[float('inf')] * 4)   # ratio of an always-unsolved side
    assert lo == hi == float('inf')

def test_train_dqn_without_updates_and_with_a_wrapping_buffer():
    res = train_dqn(tiny_dqn(learning_starts=10_000, total_steps=300, eval_every=300, eval_episodes=1))   # never updates
    assert res.history[0]['td_loss'] == 0.0 and res.history[0]['lr'] == DQNConfig().learning_rate
    res = train_dqn(tiny_dqn(buffer_size=150, target_network=False, double_dqn=True))   # D is overwritten circularly
    assert np.isfinite(res.history['q_mean']).all()


def test_train_dqn_needs_discrete_actions():
    with pytest.raises(TypeError, match='Discrete action space'): train_dqn(DQNConfig(env_id='Pendulum-v1'))


def test_greedy_returns_matches_sequential_episodes_and_checks_arguments():
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    torch.nn.init.zeros_(net[0].weight); torch.nn.init.constant_(net[0].bias, 0.0); net[0].bias.data[1] = 1.0   # always push right
    got = greedy_returns(net, 'CartPole-v1', 3, seed=5)
    want = []
    for i in range(3):
        env = gym.make('CartPole-v1'); env.reset(seed=5 + i); G, done = 0.0, False
        while not done:
            _, r, te, tr, _ = env.step(1); G += r; done = te or tr
        want.append(G)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match='n_episodes'): greedy_returns(net, 'CartPole-v1', 0, seed=5)
    with pytest.raises(TypeError, match='seed'): greedy_returns(net, 'CartPole-v1', 1, seed=None)
    with pytest.raises(TypeError, match='q_network'): greedy_returns(lambda x: x, 'CartPole-v1', 1, seed=0)


# --- exercises and plots ---------------------------------------------------------------------------------------------

def test_expected_sarsa_checker_accepts_right_and_rejects_wrong():
    def right(q, eps):
        greedy = q == q.max()
        return float((eps / len(q) + (1 - eps) * greedy / greedy.sum()) @ q)
    assert check_expected_sarsa_target(right)
    with pytest.raises(AssertionError, match='expected_sarsa_target'): check_expected_sarsa_target(lambda q, eps: float(q.max()))
    with pytest.raises(AssertionError, match='expected_sarsa_target'): check_expected_sarsa_target(lambda q, eps: float(q.mean()))   # SARSA's uniform part only


def test_plot_greedy_policy_checks_shape():
    with pytest.raises(ValueError, match='Q must be'): plot_greedy_policy(np.zeros((12, 4)), (4, 4), '←↓→↑')
    with pytest.raises(ValueError, match='Q must be'): plot_greedy_policy(np.zeros((16, 3)), (4, 4), '←↓→↑')


def test_importing_rl_does_not_import_matplotlib():
    out = subprocess.run([sys.executable, '-c', "import sys, fm_course.rl; print('matplotlib' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == 'False'
