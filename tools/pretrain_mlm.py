"""Make the MLM chapter's pretraining run: `fm_course.mlm.pretrain_run` with `MLM_RECIPE` (or a variant) into a folder.

    make mlm-checkpoint                      # the course's run, into artifacts/mlm_small (about 30 minutes on 2 CPU cores)
    python tools/pretrain_mlm.py DIR --steps 2000 --checkpoint-steps 500,1000   # a shorter variant elsewhere

The folder gets the tokenizer, the encoder at each checkpoint step and the final model (safetensors), and run.json
(recipe, training log, wall time, versions, and every file's SHA-256); `load_pretraining_run(DIR)` checks and reads it.
"""
import argparse, sys, time
from pathlib import Path


def main():
    from fm_course.mlm import MLM_RECIPE, MLM_RUN, pretrain_run
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('folder', nargs='?', default=None, help=f'where to write the run (default: {MLM_RUN} in the project)')
    ap.add_argument('--steps', type=int, help=f"optimiser steps (recipe: {MLM_RECIPE['steps']})")
    ap.add_argument('--checkpoint-steps', help=f"comma-separated steps to keep the encoder at (recipe: {MLM_RECIPE['checkpoint_steps']})")
    ap.add_argument('--device', default=None, help='cpu, cuda, ... (default: the best available)')
    a = ap.parse_args()
    recipe = {}
    if a.steps: recipe['steps'] = a.steps
    if a.checkpoint_steps: recipe['checkpoint_steps'] = tuple(int(s) for s in a.checkpoint_steps.split(','))
    folder = Path(a.folder) if a.folder else Path(__file__).resolve().parent.parent / MLM_RUN
    t0 = time.time()
    run = pretrain_run(folder, recipe, device=a.device)
    last = run.log[-1]
    print(f"{folder}: {last['step']:,} steps, {last['tokens']:,} tokens in {run.info['seconds']:.0f} s; held-out MLM loss {last['eval_loss']:.4f}, "
          f"masked accuracy {last['eval_acc']:.1%} ({time.time() - t0:.0f} s in all)")


if __name__ == '__main__':
    sys.exit(main())
