import gymnasium as gym
import numpy as np
import pytest
import torch

from fm_course.rl import (DQNConfig, bellman_optimality, check_expected_sarsa_target, dqn_target, greedy_returns,
                          mdp_arrays, plot_greedy_policy, policy_return, q_learning, sarsa, train_dqn, value_iteration)

BAD_GAMMAS = [1.0, 1.5, -0.1, '0.9', True, None]


def chain_mdp():
    "Two states; action 1 in state 0 moves to state 1, where any action ends the episode with reward 1."
    return {0: {0: [(1.0, 0, 0.0, False)], 1: [(1.0, 1, 0.0, False)]},
            1: {0: [(1.0, 1, 1.0, True)], 1: [(1.0, 1, 1.0, True)]}}


def test_value_iteration_closed_form():
    Q = value_iteration(chain_mdp(), 0.9)
    # Q*(1, .) = 1; Q*(0, 1) = 0.9; Q*(0, 0) = 0.9 * Q*(0, 1) = 0.81
    np.testing.assert_allclose(Q, [[0.81, 0.9], [1.0, 1.0]], atol=1e-9)
    T, R = mdp_arrays(chain_mdp())
    np.testing.assert_allclose(bellman_optimality(Q, T, R, 0.9), Q, atol=1e-9)


@pytest.mark.parametrize('gamma', BAD_GAMMAS)
def test_gamma_outside_unit_interval_rejected(gamma):
    lake = gym.make('FrozenLake-v1')
    with pytest.raises(ValueError, match=r'gamma must be a number in \[0, 1\)'): value_iteration(chain_mdp(), gamma)
    with pytest.raises(ValueError, match=r'gamma must be a number in \[0, 1\)'): q_learning(lake, 1, alpha=0.5, gamma=gamma, epsilon=0.1, seed=0)
    with pytest.raises(ValueError, match=r'gamma must be a number in \[0, 1\)'): sarsa(lake, 1, alpha=0.5, gamma=gamma, epsilon=0.1, seed=0)
    with pytest.raises(ValueError, match=r'gamma must be a number in \[0, 1\)'): DQNConfig(gamma=gamma)
    with pytest.raises(ValueError, match=r'gamma must be a number in \[0, 1\)'): dqn_target(torch.zeros(2), torch.zeros(2), torch.zeros(2, 3), gamma)


@pytest.mark.parametrize('env_id', ['CartPole-v1', 'MountainCarContinuous-v0'])
def test_tabular_methods_need_discrete_spaces(env_id):
    env = gym.make(env_id)
    for fn in (q_learning, sarsa):
        with pytest.raises(TypeError, match=r'must be gymnasium.spaces.Discrete'): fn(env, 1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)
    with pytest.raises(TypeError, match='env must be a gymnasium.Env'): q_learning('FrozenLake-v1', 1, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)


def test_tabular_bad_schedules_and_counts():
    lake = gym.make('FrozenLake-v1')
    with pytest.raises(ValueError, match=r'alpha must be in \(0, 1\]'): q_learning(lake, 1, alpha=0, gamma=0.9, epsilon=0.1, seed=0)
    with pytest.raises(ValueError, match=r'epsilon must be in \[0, 1\]'): sarsa(lake, 1, alpha=0.5, gamma=0.9, epsilon=1.5, seed=0)
    with pytest.raises(TypeError, match='alpha must be a number or a callable'): q_learning(lake, 1, alpha='0.5', gamma=0.9, epsilon=0.1, seed=0)
    with pytest.raises(ValueError, match='n_episodes must be an int >= 1'): q_learning(lake, 0, alpha=0.5, gamma=0.9, epsilon=0.1, seed=0)


def test_q_learning_and_sarsa_shapes_schedules_and_seeds():
    lake = gym.make('FrozenLake-v1', is_slippery=False)
    Q, ret = q_learning(lake, 50, alpha=lambda e: 0.5, gamma=0.9, epsilon=lambda e: 1.0 - e / 50, seed=3)
    assert Q.shape == (16, 4) and ret.shape == (50,) and set(np.unique(ret)) <= {0.0, 1.0}
    Q2, ret2 = q_learning(lake, 50, alpha=lambda e: 0.5, gamma=0.9, epsilon=lambda e: 1.0 - e / 50, seed=3)
    np.testing.assert_array_equal(Q, Q2); np.testing.assert_array_equal(ret, ret2)
    Qs, _ = sarsa(lake, 20, alpha=0.5, gamma=0.9, epsilon=0.2, seed=0)
    assert Qs.shape == (16, 4)


def test_mdp_table_and_policy_checks():
    with pytest.raises(TypeError, match='P must be a non-empty dict'): mdp_arrays([])
    bad = chain_mdp(); bad[0][0] = [(0.5, 0, 0.0, False)]
    with pytest.raises(ValueError, match=r'P\[0\]\[0\]: transition probabilities sum to 0.5'): mdp_arrays(bad)
    with pytest.raises(ValueError, match='policy must be an int array of shape'): policy_return(chain_mdp(), np.array([1]), 10)
    with pytest.raises(ValueError, match='horizon must be an int >= 1'): policy_return(chain_mdp(), np.array([1, 0]), 0)
    assert policy_return(chain_mdp(), np.array([1, 0]), 2) == 1.0 and policy_return(chain_mdp(), np.array([0, 0]), 50) == 0.0
    with pytest.raises(ValueError, match='tol must be a number > 0'): value_iteration(chain_mdp(), 0.9, tol=0)


def test_dqn_target_shapes():
    with pytest.raises(ValueError, match=r'expected reward and terminated \[B\]'): dqn_target(torch.zeros(3), torch.zeros(2), torch.zeros(3, 2), 0.9)
    with pytest.raises(ValueError, match="q_next_online must have q_next_target's shape"): dqn_target(torch.zeros(3), torch.zeros(3), torch.zeros(3, 2), 0.9, torch.zeros(3, 4))


@pytest.mark.parametrize('kw, msg', [(dict(batch_size=0), 'batch_size must be an int >= 1'), (dict(total_steps=1.5), 'total_steps must be an int'),
                                     (dict(tau=0.0), 'tau must be in'), (dict(eps_end=2.0), 'eps_end must be in'),
                                     (dict(hidden=()), 'hidden must be a non-empty tuple'), (dict(learning_rate=0.0), 'learning_rate must be > 0')])
def test_dqn_config_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg): DQNConfig(**kw)


def test_train_dqn_small_run_records_every_evaluation():
    cfg = DQNConfig(seed=0, total_steps=600, learning_starts=200, train_freq=100, gradient_steps=5, eval_every=300, eval_episodes=2, device='cpu')
    res = train_dqn(cfg)
    assert [e['step'] for e in res.evals] == [300, 600]
    assert all(set(e) == {'step', 'seconds', 'mean_return', 'td_loss', 'q_mean'} for e in res.evals)
    assert res.evals[0]['seconds'] <= res.evals[1]['seconds'] <= res.seconds
    assert (res.steps_to_solve is None) == (res.seconds_to_solve is None)
    assert res.final_return == res.evals[-1]['mean_return'] and len(res.episode_returns) > 0
    assert np.isfinite(res.evals[-1]['td_loss'])
    again = train_dqn(cfg)
    assert [e['mean_return'] for e in again.evals] == [e['mean_return'] for e in res.evals]   # same seed, same numbers


def test_train_dqn_rejects_non_box_observations_and_wrong_config():
    with pytest.raises(TypeError, match='needs a flat Box observation space'): train_dqn(DQNConfig(env_id='FrozenLake-v1'))
    with pytest.raises(TypeError, match='config must be a DQNConfig'): train_dqn(dict(seed=0))


def test_greedy_returns_matches_sequential_episodes():
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


def test_expected_sarsa_checker_accepts_right_and_rejects_wrong():
    def right(q, eps):
        greedy = q == q.max()
        return float((eps / len(q) + (1 - eps) * greedy / greedy.sum()) @ q)
    assert check_expected_sarsa_target(right)
    with pytest.raises(AssertionError, match='expected_sarsa_target'): check_expected_sarsa_target(lambda q, eps: float(q.max()))


def test_plot_greedy_policy_checks_shape():
    with pytest.raises(ValueError, match=r'Q must be \[16, 4\]'): plot_greedy_policy(np.zeros((12, 4)), (4, 4), '←↓→↑')
