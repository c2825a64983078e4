"""Side-by-side benchmark: `fm_course.rl.train_dqn` against Stable-Baselines3's DQN on CartPole-v1.

Both sides run the rl-baselines3-zoo hyperparameters for CartPole-v1 (hyperparams/dqn.yml) and the same
learning-rate schedule: train_dqn's linear annealing to 0, eta_k = eta (1 - k/N) for update k of N; SB3 sets its rate
once per burst of 128 updates from its progress in env steps, and gets the mean of train_dqn's rates over that burst.
Same protocol on both sides: 50,000 env steps and as many updates (SB3 is given train_dqn's last, partial burst at
step 50,000); every 5,000 steps, 10 greedy episodes run by the same code, fm_course.rl.greedy_returns (on SB3's
q_net), episode i on CartPole-v1 reset with seed + 10,000 + i; solved = the first evaluation with mean return >= 475,
and under the stricter rule, mean >= 475 over the last 3 evaluations. Seconds are wall-clock from just before the
agent is built (imports excluded) with the evaluations' time subtracted on both sides. Every (implementation, seed)
runs in a fresh process with the same intra-op threads; the order alternates per seed (ours first on even seeds,
SB3 first on odd ones) so that drift in the machine's speed hits both sides alike.

    pip install -c constraints.txt "stable-baselines3==2.9.2"     # a benchmark-only dependency
    python tools/bench_dqn.py --seeds 0-9 --out results/dqn_vs_sb3.json
    python tools/bench_dqn.py --profile-only --out /tmp/profile.json     # the per-update profile alone
    python tools/bench_dqn.py --floor --out results/dqn_vs_sb3.json      # add the update's floor and faster candidates
"""
from __future__ import annotations
import argparse, json, math, os, platform, subprocess, sys, time
from pathlib import Path

ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
TOTAL_STEPS, EVAL_EVERY, EVAL_EPISODES, EVAL_OFFSET, SOLVE, STRICT_LAST = 50_000, 5_000, 10, 10_000, 475.0, 3
N_BOOT, CI = 10_000, 0.95
PROFILE_REPEATS = 3


def ours_config(seed: int, total_steps: int = TOTAL_STEPS):
    from fm_course.rl import DQNConfig
    return DQNConfig(seed=seed, total_steps=total_steps, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                     eval_seed_offset=EVAL_OFFSET, solve_return=SOLVE, device='cpu')


def burst_steps(total_steps: int, train_freq: int, learning_starts: int) -> list[int]:
    "Env steps at which train_dqn runs a burst of updates: every `train_freq` from `learning_starts` on, and the last step."
    steps = [s for s in range(train_freq, total_steps + 1, train_freq) if s >= learning_starts]
    if total_steps % train_freq and total_steps >= learning_starts: steps.append(total_steps)
    return steps


class MatchedLinearLR:
    """SB3 learning-rate schedule (a function of progress_remaining p = 1 - t/T) giving the burst that starts at env step t
    the mean of train_dqn's per-update rates eta (1 - k/N) over the same burst (k = 128 b .. 128 b + 127 for burst b)."""
    def __init__(self, lr: float, total_steps: int, train_freq: int, learning_starts: int, gradient_steps: int):
        self.lr, self.T, self.freq, self.starts, self.g = lr, total_steps, train_freq, learning_starts, gradient_steps
        self.n_updates = gradient_steps * len(burst_steps(total_steps, train_freq, learning_starts))

    def __call__(self, progress_remaining: float) -> float:
        t = round(self.T * (1 - progress_remaining))
        b = sum(1 for s in burst_steps(self.T, self.freq, self.starts) if s < t)   # bursts run before this one
        return self.lr * max(0.0, 1 - (self.g * b + (self.g - 1) / 2) / self.n_updates)


def run_ours(seed: int, total_steps: int = TOTAL_STEPS) -> dict:
    import torch
    from fm_course.rl import train_dqn
    res = train_dqn(ours_config(seed, total_steps))
    evals = [dict(step=e['step'], seconds=e['seconds'] - e['eval_seconds'], eval_seconds=e['eval_seconds'],
                  mean_return=e['mean_return'], lr=e['lr']) for e in res.history]
    at_solve = next((e for e in evals if e['step'] == res.steps_to_solve), None)
    return dict(evals=evals, steps_to_solve=res.steps_to_solve, seconds_to_solve=at_solve and at_solve['seconds'],
                seconds=res.seconds - evals[-1]['eval_seconds'], seconds_with_evals=res.seconds, threads=torch.get_num_threads())


def run_sb3(seed: int, total_steps: int = TOTAL_STEPS) -> dict:
    import gymnasium as gym
    import torch
    import stable_baselines3
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from fm_course.rl import greedy_returns
    z = ZOO_CARTPOLE
    lr = MatchedLinearLR(z['learning_rate'], total_steps, z['train_freq'], z['learning_starts'], z['gradient_steps'])
    t0 = time.perf_counter()
    out = dict(evals=[], steps_to_solve=None, seconds_to_solve=None, sb3_version=stable_baselines3.__version__)
    eval_seconds = 0.0

    class Evaluate(BaseCallback):
        "Called after each env step, before SB3 stores the transition: evaluate every EVAL_EVERY steps, stop at the last step."
        def _on_step(self) -> bool:
            nonlocal eval_seconds
            t = self.num_timesteps
            if t == total_steps and total_steps % z['train_freq']:   # train_dqn's last, partial burst
                self.model.train(gradient_steps=z['gradient_steps'], batch_size=z['batch_size'])
            if t % EVAL_EVERY == 0 or t == total_steps:
                t_eval = time.perf_counter()
                mean = float(greedy_returns(self.model.q_net, 'CartPole-v1', EVAL_EPISODES, seed + EVAL_OFFSET).mean())
                eval_seconds += time.perf_counter() - t_eval
                seconds = time.perf_counter() - t0 - eval_seconds
                out['evals'].append(dict(step=t, seconds=seconds, eval_seconds=eval_seconds, mean_return=mean,
                                         lr=self.model.policy.optimizer.param_groups[0]['lr']))
                if out['steps_to_solve'] is None and mean >= SOLVE: out['steps_to_solve'], out['seconds_to_solve'] = t, seconds
            return t < total_steps

    model = DQN('MlpPolicy', gym.make('CartPole-v1'), seed=seed, device='cpu', verbose=0, **{**z, 'learning_rate': lr})
    model.learn(total_timesteps=total_steps, callback=Evaluate())
    out['seconds_with_evals'] = time.perf_counter() - t0
    out['seconds'] = out['seconds_with_evals'] - eval_seconds
    out['n_updates'], out['threads'] = model._n_updates, torch.get_num_threads()
    return out


# --- per-update profile ---------------------------------------------------------------------------------------------

def _fill_transitions(n: int, seed: int = 0):
    "n CartPole transitions of a random policy, as arrays (s, a, r, s', d)."
    import gymnasium as gym
    import numpy as np
    env, rng = gym.make('CartPole-v1'), np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    S, A, R, S2, D = [], [], [], [], []
    for _ in range(n):
        a = int(rng.integers(2))
        nxt, r, term, trunc, _ = env.step(a)
        S.append(obs); A.append(a); R.append(r); S2.append(nxt); D.append(float(term))
        obs = env.reset()[0] if term or trunc else nxt
    return [np.array(x, dtype=np.float32) for x in (S, A, R, S2, D)]


def _phase_timer():
    "A stopwatch that charges the time since its last call to a named phase."
    totals, last = {}, [time.perf_counter()]
    def lap(name):
        now = time.perf_counter(); totals[name] = totals.get(name, 0.0) + now - last[0]; last[0] = now
    def reset(): last[0] = time.perf_counter()
    return totals, lap, reset


def _ours_setup(threads: int):
    "train_dqn's config, a replay buffer of 10,000 random-policy transitions, Q, its target copy and fused Adam, seeded."
    import copy
    import torch
    from fm_course.models import MLP
    torch.set_num_threads(threads); torch.manual_seed(0)
    c = ours_config(0)
    S, A, R, S2, D = _fill_transitions(10_000)
    replay = {'obs': torch.as_tensor(S), 'actions': torch.as_tensor(A).long(), 'rewards': torch.as_tensor(R),
              'next_obs': torch.as_tensor(S2), 'dones': torch.as_tensor(D)}
    q = MLP((4, *c.hidden, 2)); q_target = copy.deepcopy(q).requires_grad_(False)
    return c, replay, q, q_target, torch.optim.Adam(q.parameters(), lr=c.learning_rate, fused=True)


def profile_ours(n_updates: int, threads: int) -> dict:
    """train_dqn's update, line for line (fm_course/rl.py), with a stopwatch between its phases; the buffer holds 10,000
    random-policy transitions. On the CPU every op is synchronous, so each lap is that phase's own time."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from fm_course.rl import dqn_target
    c, replay, q, q_target, opt = _ours_setup(threads)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda u: 1 - u / (2 * n_updates))
    gen = torch.Generator().manual_seed(0)
    td_loss_sum, q_sum = torch.zeros(()), torch.zeros(())
    totals, lap, reset = _phase_timer()
    for k in range(n_updates + 200):
        if k == 200: totals.clear(); reset(); t_start = time.perf_counter()   # 200 updates of warm-up
        idx = torch.randint(10_000, (c.batch_size,), generator=gen)
        s, a, r, s_next, d = (replay[key][idx] for key in ('obs', 'actions', 'rewards', 'next_obs', 'dones'))
        lap('sample')
        with torch.no_grad():
            y = dqn_target(r, d, q_target(s_next), c.gamma, None)
        lap('target (no-grad forward)')
        q_sa = q(s).gather(1, a[:, None]).squeeze(1)
        loss = F.smooth_l1_loss(q_sa, y)
        lap('forward + loss')
        opt.zero_grad(set_to_none=True)
        loss.backward()
        lap('backward')
        nn.utils.clip_grad_norm_(q.parameters(), c.max_grad_norm)
        lap('clip')
        opt.step(); sched.step()
        lap('optimizer (+ lr schedule)')
        td_loss_sum += loss.detach(); q_sum += q_sa.detach().mean()
        if (k + 1) % c.target_update_interval == 0:
            with torch.no_grad():
                for pt, p in zip(q_target.parameters(), q.parameters()): pt.lerp_(p, c.tau)
        lap('logging + target refresh')
    wall = time.perf_counter() - t_start
    return _per_update(totals, wall, n_updates)


FLOOR_VARIANTS = ('matrix products alone', 'train_dqn (eager)', 'targets batched per target period', 'torch.compile (loss)',
                  'torch.compile (whole update)', 'bf16 autocast')


def profile_floor(variant: str, n_updates: int, threads: int) -> float:
    """Microseconds per update of one variant of train_dqn's update (same network, batch, optimizer, clipping and data as
    `profile_ours`): the update as train_dqn runs it; candidates for a faster one (the target network's forward for all
    128 updates of a target period in one batched pass; torch.compile, CPU inductor, of the loss or of the whole step;
    bf16 autocast); and the floor, the update's 11 matrix products alone (6 forward, 5 backward) at the same shapes."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from fm_course.rl import dqn_target
    c, replay, q, q_target, opt = _ours_setup(threads)
    gen = torch.Generator().manual_seed(0)
    B, period = c.batch_size, c.target_update_interval
    if variant == 'matrix products alone':
        W = [l.weight.detach() for l in q if isinstance(l, nn.Linear)]; b = [l.bias.detach() for l in q if isinstance(l, nn.Linear)]
        x = [torch.randn(B, w.shape[1]) for w in W]; g = [torch.randn(B, w.shape[0]) for w in W]
        def update():
            for _ in range(2):   # online and target forward: addmm per layer
                for xi, wi, bi in zip(x, W, b): torch.addmm(bi, xi, wi.t())
            for i in range(3):   # backward: dW per layer, dX for the two upper layers
                g[i].t().mm(x[i])
                if i: g[i].mm(W[i])
    else:
        def loss_of(s, a, y):
            return F.smooth_l1_loss(q(s).gather(1, a[:, None]).squeeze(1), y)
        if variant == 'torch.compile (loss)': loss_of = torch.compile(loss_of)
        def step(s, a, y):
            with torch.autocast('cpu', torch.bfloat16, enabled=variant == 'bf16 autocast'):
                loss = loss_of(s, a, y)
            opt.zero_grad(set_to_none=True); loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), c.max_grad_norm); opt.step()
            return loss.detach()
        if variant == 'torch.compile (whole update)': step = torch.compile(step)
        def targets(idx):
            with torch.no_grad(), torch.autocast('cpu', torch.bfloat16, enabled=variant == 'bf16 autocast'):
                return dqn_target(replay['rewards'][idx], replay['dones'][idx], q_target(replay['next_obs'][idx]).float(), c.gamma, None)
        k = [0]; y_period = [None]
        def update():
            if variant == 'targets batched per target period':
                if k[0] % period == 0:
                    idx_period = torch.randint(10_000, (period, B), generator=gen)
                    y_period[0] = (idx_period, targets(idx_period.flatten()).view(period, B))
                idx, y = y_period[0][0][k[0] % period], y_period[0][1][k[0] % period]
            else:
                idx = torch.randint(10_000, (B,), generator=gen); y = targets(idx)
            step(replay['obs'][idx], replay['actions'][idx], y)
            k[0] += 1
    for _ in range(2 * period): update()   # warm-up (and compilation)
    t0 = time.perf_counter()
    for _ in range(n_updates): update()
    return (time.perf_counter() - t0) / n_updates * 1e6


def run_floor(n_updates: int, threads: int = 2, repeats: int = PROFILE_REPEATS) -> dict:
    "`profile_floor` for every variant, each in its own process, `repeats` interleaved rounds, the fastest of each."
    best = {}
    for _ in range(repeats):
        for v in FLOOR_VARIANTS:
            us = _child(['--one-floor', v, '--n-updates', str(n_updates), '--threads', str(threads)])
            best[v] = min(best.get(v, math.inf), us)
    return dict(intra_op_threads=threads, microseconds_per_update=best, repeats=repeats, n_updates=n_updates, date=time.strftime('%Y-%m-%d'),
                method=profile_floor.__doc__.replace('\n    ', ' '))


def profile_sb3(n_updates: int, threads: int) -> dict:
    """SB3 DQN.train's update, line for line (stable_baselines3/dqn/dqn.py), with the same stopwatch; SB3's own replay
    buffer and policy, holding the same 10,000 transitions."""
    import gymnasium as gym
    import torch
    import torch.nn.functional as F
    from stable_baselines3 import DQN
    from stable_baselines3.common.logger import Logger
    torch.set_num_threads(threads)
    z = ZOO_CARTPOLE
    model = DQN('MlpPolicy', gym.make('CartPole-v1'), seed=0, device='cpu', verbose=0, **z)
    model.set_logger(Logger(folder=None, output_formats=[]))   # learn() would set one up
    S, A, R, S2, D = _fill_transitions(10_000)
    for i in range(10_000):
        model.replay_buffer.add(S[i][None], S2[i][None], A[i:i + 1, None], R[i:i + 1], D[i:i + 1], [{}])
    opt = model.policy.optimizer
    totals, lap, reset = _phase_timer()
    for k in range(n_updates + 200):
        if k == 200: totals.clear(); reset(); t_start = time.perf_counter()
        if k % z['gradient_steps'] == 0:
            model._update_learning_rate(opt)                     # once per train() call, i.e. per burst
        lap('optimizer (+ lr schedule)')
        rd = model.replay_buffer.sample(z['batch_size'], env=None)
        lap('sample')
        with torch.no_grad():
            nq = model.q_net_target(rd.next_observations).max(dim=1)[0].reshape(-1, 1)
            y = rd.rewards + (1 - rd.dones) * model.gamma * nq
        lap('target (no-grad forward)')
        cq = torch.gather(model.q_net(rd.observations), dim=1, index=rd.actions.long())
        loss = F.smooth_l1_loss(cq, y)
        lap('forward + loss')
        loss.item()                                               # SB3 logs every update's loss: one host read each
        lap('logging + target refresh')
        opt.zero_grad()
        loss.backward()
        lap('backward')
        torch.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
        lap('clip')
        opt.step()
        lap('optimizer (+ lr schedule)')
    wall = time.perf_counter() - t_start
    return _per_update(totals, wall, n_updates)


def _per_update(totals: dict, wall: float, n: int) -> dict:
    us = {k: 1e6 * v / n for k, v in totals.items()}
    return dict(microseconds_per_update=us, total_microseconds_per_update=1e6 * wall / n)


def profile_acting(impl: str, threads: int, total_steps: int = 10_000) -> dict:
    """Seconds per env step of acting alone (epsilon-greedy action, simulator step, storing the transition): the same run
    with gradient_steps=0, evaluations excluded. Exploration anneals over the same fraction of the run as in the benchmark."""
    import dataclasses
    import torch
    torch.set_num_threads(threads)
    if impl == 'ours':
        from fm_course.rl import train_dqn
        res = train_dqn(dataclasses.replace(ours_config(0, total_steps), gradient_steps=0))
        seconds = res.seconds - res.history[-1]['eval_seconds']
    else:
        import gymnasium as gym
        from stable_baselines3 import DQN
        t0 = time.perf_counter()
        DQN('MlpPolicy', gym.make('CartPole-v1'), seed=0, device='cpu', verbose=0, **{**ZOO_CARTPOLE, 'gradient_steps': 0}).learn(total_steps)
        seconds = time.perf_counter() - t0
    return dict(microseconds_per_env_step=1e6 * seconds / total_steps)


# --- statistics -----------------------------------------------------------------------------------------------------

def iqm(x):
    "Interquartile mean: the mean of the middle 50% of the sorted values (Agarwal et al., 2021); inf if an inf is among them."
    import numpy as np
    x = np.sort(np.asarray(x, dtype=float)); n = len(x); lo = int(math.floor(n * 0.25)); hi = n - lo
    mid = x[lo:hi]
    return float('inf') if np.isinf(mid).any() else float(mid.mean())


def bootstrap_ci(x, stat, y=None, n_boot: int = N_BOOT, seed: int = 0) -> list[float]:
    "Percentile bootstrap 95% interval of stat(x), or of stat(y) / stat(x) (each sample resampled on its own) if y is given."
    import numpy as np
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float); y = None if y is None else np.asarray(y, dtype=float)
    vals = np.array([stat(x[rng.integers(len(x), size=len(x))]) for _ in range(n_boot)])
    if y is not None:
        with np.errstate(invalid='ignore', divide='ignore'):   # inf / inf (both unsolved) is nan and left out
            vals = np.array([stat(y[rng.integers(len(y), size=len(y))]) for _ in range(n_boot)]) / vals
        vals = vals[~np.isnan(vals)]
    if not len(vals): return [float('nan'), float('nan')]
    a = (1 - CI) / 2   # quantiles without interpolation, so that inf (unsolved) stays inf
    return [float(np.quantile(vals, a, method='inverted_cdf')), float(np.quantile(vals, 1 - a, method='inverted_cdf'))]


def strict_steps(run: dict) -> int | None:
    "Env steps at the first evaluation where the mean of it and the STRICT_LAST - 1 before it is >= SOLVE."
    r = [e['mean_return'] for e in run['evals']]
    for i in range(STRICT_LAST - 1, len(r)):
        if sum(r[i - STRICT_LAST + 1:i + 1]) / STRICT_LAST >= SOLVE: return run['evals'][i]['step']
    return None


def summarise(runs: list[dict]) -> dict:
    "Counts, and median and IQM with bootstrap intervals; an unsolved run counts as inf steps and seconds (worse than any solved run)."
    import numpy as np
    inf = float('inf')
    steps = [r['steps_to_solve'] or inf for r in runs]
    secs = [r['seconds_to_solve'] or inf for r in runs]
    out = dict(seeds=len(runs), solved=sum(r['steps_to_solve'] is not None for r in runs),
               solved_and_final_ge_475=sum(r['steps_to_solve'] is not None and r['evals'][-1]['mean_return'] >= SOLVE for r in runs),
               strict_last3_mean_ge_475=sum(bool(np.mean([e['mean_return'] for e in r['evals'][-STRICT_LAST:]]) >= SOLVE) for r in runs),
               strict_window_solved=sum(strict_steps(r) is not None for r in runs),
               median_strict_window_steps=float(np.median([strict_steps(r) or inf for r in runs])))
    for name, x in (('steps_to_solve', steps), ('seconds_to_solve', secs), ('total_seconds', [r['seconds'] for r in runs])):
        out[f'median_{name}'] = float(np.median(x)); out[f'median_{name}_ci'] = bootstrap_ci(x, np.median)
        out[f'iqm_{name}'] = iqm(x); out[f'iqm_{name}_ci'] = bootstrap_ci(x, iqm)
    out['median_eval_seconds_excluded'] = float(np.median([r['evals'][-1]['eval_seconds'] for r in runs]))
    return out


def ratios(ours: list[dict], sb3: list[dict]) -> dict:
    "SB3 / ours for the median and the IQM of each quantity, with bootstrap intervals (both sides resampled independently)."
    import numpy as np
    inf, out = float('inf'), {}
    for name, get in (('steps_to_solve', lambda r: r['steps_to_solve'] or inf), ('seconds_to_solve', lambda r: r['seconds_to_solve'] or inf),
                      ('total_seconds', lambda r: r['seconds'])):
        x, y = [get(r) for r in ours], [get(r) for r in sb3]
        for sname, stat in (('median', np.median), ('iqm', iqm)):
            a, b = stat(x), stat(y)
            out[f'{sname}_{name}'] = b / a if math.isfinite(a) else float('nan')
            out[f'{sname}_{name}_ci'] = bootstrap_ci(x, stat, y)
    return out


def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode: sys.exit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])



def run_profile(n_updates: int, repeats: int = PROFILE_REPEATS) -> dict:
    """Per-update phases and acting, per side and intra-op thread count, each measurement in its own process; `repeats`
    interleaved rounds, keeping the fastest of each (phase by phase), the usual estimate of a cost under background noise."""
    reps = {}
    for _ in range(repeats):
        for threads in (1, 2):
            for impl in ('ours', 'sb3'):
                key, args = f'{impl}, {threads} thread{"s" * (threads > 1)}', ['--threads', str(threads)]
                reps.setdefault(key, []).append(dict(**_child(['--one-profile', impl, '--n-updates', str(n_updates), *args]),
                                                     **_child(['--one-acting', impl, *args])))
    return {key: dict(microseconds_per_update={ph: min(r['microseconds_per_update'][ph] for r in rs) for ph in rs[0]['microseconds_per_update']},
                      total_microseconds_per_update=min(r['total_microseconds_per_update'] for r in rs),
                      microseconds_per_env_step=min(r['microseconds_per_env_step'] for r in rs), repeats=len(rs))
            for key, rs in reps.items()}


def print_profile(prof: dict):
    phases = ['sample', 'target (no-grad forward)', 'forward + loss', 'backward', 'clip', 'optimizer (+ lr schedule)', 'logging + target refresh']
    print(f"{'µs per update':28s}" + ''.join(f'{k:>16s}' for k in prof))
    for ph in phases:
        print(f'{ph:28s}' + ''.join(f"{p['microseconds_per_update'].get(ph, 0.0):16.1f}" for p in prof.values()))
    print(f"{'total (wall)':28s}" + ''.join(f"{p['total_microseconds_per_update']:16.1f}" for p in prof.values()))
    print(f"{'µs per env step of acting':28s}" + ''.join(f"{p['microseconds_per_env_step']:16.1f}" for p in prof.values()))


def parse_seeds(s: str) -> list[int]:
    if '-' in s and ',' not in s: lo, hi = s.split('-'); return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in s.split(',')]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', default='0-9', help="'0-9' or '0,1,2'")
    ap.add_argument('--total-steps', type=int, default=TOTAL_STEPS)
    ap.add_argument('--out', default='results/dqn_vs_sb3.json')
    ap.add_argument('--profile-updates', type=int, default=2_000, help='updates timed per side and thread count (0: no profile)')
    ap.add_argument('--profile-only', action='store_true')
    ap.add_argument('--runs-from', help="summarise the runs (and profile) saved in OUT.partial.json by an interrupted benchmark instead of running")
    ap.add_argument('--floor', action='store_true', help='time the update floor and the candidate variants (see profile_floor) and add them to OUT')
    ap.add_argument('--one', choices=['ours', 'sb3'], help=argparse.SUPPRESS)
    ap.add_argument('--one-floor', choices=FLOOR_VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument('--one-profile', choices=['ours', 'sb3'], help=argparse.SUPPRESS)
    ap.add_argument('--one-acting', choices=['ours', 'sb3'], help=argparse.SUPPRESS)
    ap.add_argument('--threads', type=int, help=argparse.SUPPRESS)
    ap.add_argument('--n-updates', type=int, help=argparse.SUPPRESS)
    ap.add_argument('--seed', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:   # child process: one run, JSON on stdout
        print(json.dumps((run_ours if a.one == 'ours' else run_sb3)(a.seed, a.total_steps))); return
    if a.one_profile:
        print(json.dumps((profile_ours if a.one_profile == 'ours' else profile_sb3)(a.n_updates, a.threads))); return
    if a.one_floor:
        print(json.dumps(profile_floor(a.one_floor, a.n_updates, a.threads))); return
    if a.floor:   # adds the floor to an existing report
        report = json.loads(Path(a.out).read_text()); report['floor'] = run_floor(a.profile_updates, report.get('intra_op_threads', 2))
        Path(a.out).write_text(json.dumps(report, indent=1) + '\n')
        print(json.dumps(report['floor']['microseconds_per_update'], indent=1)); return
    if a.one_acting:
        print(json.dumps(profile_acting(a.one_acting, a.threads))); return
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(a.out).with_suffix('.partial.json')   # every finished run, so that a crash loses nothing
    if a.runs_from:
        saved = json.loads(Path(a.runs_from).read_text()); prof, runs, seeds = saved['profile'], saved['runs'], []
    else:
        prof = run_profile(a.profile_updates) if a.profile_updates else {}
        seeds, runs = parse_seeds(a.seeds), {'ours': [], 'sb3': []}
    if prof: print_profile(prof)
    if a.profile_only:
        Path(a.out).write_text(json.dumps(prof, indent=1) + '\n'); return
    for seed in seeds:
        for impl in (('ours', 'sb3') if seed % 2 == 0 else ('sb3', 'ours')):
            run = dict(seed=seed, **_child(['--one', impl, '--seed', str(seed), '--total-steps', str(a.total_steps)]))
            runs[impl].append(run)
            partial.write_text(json.dumps(dict(profile=prof, runs=runs)))
            print(f"{impl:4s} seed {seed}: solved at {run['steps_to_solve']} steps / {run['seconds_to_solve'] and round(run['seconds_to_solve'], 1)} s; "
                  f"evals {[round(e['mean_return']) for e in run['evals']]}; {run['seconds']:.1f} s training + {run['evals'][-1]['eval_seconds']:.1f} s evaluations", flush=True)
    summary = {impl: summarise(rs) for impl, rs in runs.items()}
    summary['ratio_sb3_over_ours'] = ratios(runs['ours'], runs['sb3'])
    import torch, stable_baselines3
    ours_cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in ours_config(0, a.total_steps).__dict__.items() if k not in ('seed', 'device')}
    z = ZOO_CARTPOLE
    lr = MatchedLinearLR(z['learning_rate'], a.total_steps, z['train_freq'], z['learning_starts'], z['gradient_steps'])
    report = dict(protocol=__doc__.split('\n\n')[1], machine=f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                  date=time.strftime('%Y-%m-%d'), versions=dict(torch=torch.__version__, stable_baselines3=stable_baselines3.__version__),
                  intra_op_threads=runs['ours'][0]['threads'],
                  config=dict(ours=dict(ours_cfg, learning_rate_schedule=f'eta (1 - k/N) per update k = 0..N-1, N = {lr.n_updates}'),
                              sb3=dict(z, learning_rate=f"{z['learning_rate']} (1 - (128 b + 63.5)/{lr.n_updates}) for burst b = 0..{lr.n_updates // 128 - 1}, set once per burst",
                                       target_update_interval_note='10 env steps = once per burst of 128 updates, as train_dqn\'s 128 updates',
                                       last_partial_burst='128 updates at step 50,000 run by the callback, as train_dqn does'),
                              residual_difference='within a burst train_dqn\'s rate moves by 127/N of eta (0.5%) around the constant rate SB3 holds; '
                                                  'SB3 samples with numpy and reads the loss each update; SB3\'s buffer lacks the 50,000th transition at the last burst'),
                  statistics=f'median and interquartile mean (mean of the middle 50%) over seeds; percentile bootstrap {CI:.0%} intervals, {N_BOOT:,} resamples '
                             '(ratios: both sides resampled independently); an unsolved run counts as infinite steps and seconds',
                  profile=prof, summary=summary, runs=runs)
    Path(a.out).write_text(json.dumps(report, indent=1) + '\n')
    partial.unlink(missing_ok=True)
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
