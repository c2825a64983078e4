"""Side-by-side benchmark: `fm_course.rl.train_dqn` against Stable-Baselines3's DQN on CartPole-v1.

Stable-Baselines3 runs with the rl-baselines3-zoo hyperparameters for CartPole-v1 (hyperparams/dqn.yml).
Both sides follow one protocol: 50,000 env steps; every 5,000 steps, 10 greedy episodes on a separate
CartPole-v1, episode i reset with seed + 10,000 + i; solved = the first evaluation with mean return >= 475;
seconds are wall-clock from just before the agent is built (imports excluded), evaluations included.
Every (implementation, seed) runs in a fresh process; the order alternates per seed (ours first on even
seeds, SB3 first on odd ones) so that drift in the machine's speed hits both sides alike.

    pip install "stable-baselines3==2.9.2"      # a benchmark-only dependency
    python tools/bench_dqn.py --seeds 0,1,2,3,4 --out results/dqn_vs_sb3.json
"""
from __future__ import annotations
import argparse, json, platform, statistics, subprocess, sys, time
from pathlib import Path

ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                    exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]))
TOTAL_STEPS, EVAL_EVERY, EVAL_EPISODES, EVAL_OFFSET, SOLVE = 50_000, 5_000, 10, 10_000, 475.0

def run_ours(seed: int) -> dict:
    from fm_course.rl import DQNConfig, train_dqn
    res = train_dqn(DQNConfig(seed=seed, total_steps=TOTAL_STEPS, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                              eval_seed_offset=EVAL_OFFSET, solve_return=SOLVE, device='cpu'))
    return dict(evals=[{k: e[k] for k in ('step', 'seconds', 'mean_return')} for e in res.history],
                steps_to_solve=res.steps_to_solve, seconds_to_solve=res.seconds_to_solve, seconds=res.seconds)

def run_sb3(seed: int) -> dict:
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    t0 = time.perf_counter()
    out = dict(evals=[], steps_to_solve=None, seconds_to_solve=None, sb3_version=stable_baselines3.__version__)

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY == 0:
                env, total = gym.make('CartPole-v1'), 0.0
                for i in range(EVAL_EPISODES):
                    obs, _ = env.reset(seed=seed + EVAL_OFFSET + i); done = False
                    while not done:
                        action, _ = self.model.predict(obs, deterministic=True)
                        obs, r, terminated, truncated, _ = env.step(int(action)); total += r; done = terminated or truncated
                seconds, mean = time.perf_counter() - t0, total / EVAL_EPISODES
                out['evals'].append(dict(step=self.num_timesteps, seconds=seconds, mean_return=mean))
                if out['steps_to_solve'] is None and mean >= SOLVE: out['steps_to_solve'], out['seconds_to_solve'] = self.num_timesteps, seconds
            return True

    model = DQN('MlpPolicy', gym.make('CartPole-v1'), seed=seed, device='cpu', verbose=0, **ZOO_CARTPOLE)
    model.learn(total_timesteps=TOTAL_STEPS, callback=Evaluate())
    out['seconds'] = time.perf_counter() - t0
    return out

def summarise(runs: list[dict]) -> dict:
    inf = float('inf')
    solved = [r for r in runs if r['steps_to_solve'] is not None]
    return dict(seeds=len(runs), solved=len(solved),
                solved_and_final_ge_475=sum(r['steps_to_solve'] is not None and r['evals'][-1]['mean_return'] >= SOLVE for r in runs),
                median_steps_to_solve=statistics.median(r['steps_to_solve'] or inf for r in runs),
                median_seconds_to_solve=statistics.median(r['seconds_to_solve'] or inf for r in runs),
                median_total_seconds=statistics.median(r['seconds'] for r in runs))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seeds', default='0,1,2,3,4')
    ap.add_argument('--out', default='results/dqn_vs_sb3.json')
    ap.add_argument('--one', choices=['ours', 'sb3'], help=argparse.SUPPRESS)
    ap.add_argument('--seed', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:   # child process: one run, JSON on stdout
        print(json.dumps((run_ours if a.one == 'ours' else run_sb3)(a.seed))); return
    seeds, runs = [int(s) for s in a.seeds.split(',')], {'ours': [], 'sb3': []}
    for seed in seeds:
        for impl in (('ours', 'sb3') if seed % 2 == 0 else ('sb3', 'ours')):
            proc = subprocess.run([sys.executable, __file__, '--one', impl, '--seed', str(seed)], capture_output=True, text=True)
            if proc.returncode: sys.exit(f"{impl} seed {seed} failed:\n{proc.stderr}")
            run = dict(seed=seed, **json.loads(proc.stdout.strip().splitlines()[-1]))
            runs[impl].append(run)
            print(f"{impl:4s} seed {seed}: solved at {run['steps_to_solve']} steps / {run['seconds_to_solve'] and round(run['seconds_to_solve'], 1)} s; "
                  f"evals {[round(e['mean_return']) for e in run['evals']]}; {run['seconds']:.1f} s in all", flush=True)
    summary = {impl: summarise(rs) for impl, rs in runs.items()}
    summary['ratio_sb3_over_ours'] = {k: summary['sb3'][k] / summary['ours'][k] for k in ('median_steps_to_solve', 'median_seconds_to_solve', 'median_total_seconds')}
    report = dict(protocol=__doc__.split('\n\n')[1], machine=f"{platform.machine()} {platform.processor() or ''}, {__import__('os').cpu_count()} CPUs, Python {platform.python_version()}",
                  date=time.strftime('%Y-%m-%d'), sb3_hyperparameters=ZOO_CARTPOLE, summary=summary, runs=runs)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps(summary, indent=1))

if __name__ == '__main__':
    main()
