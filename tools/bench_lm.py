"""Side-by-side benchmark: `fm_course.lm.train_lm` against nanoGPT's train.py on Tiny Shakespeare (character level).

Both sides train nanoGPT's README CPU configuration: 4 layers, 4 heads, 128 wide, context 64, batch 12, 2,000 steps,
dropout 0, no biases, AdamW (lr 1e-3, betas 0.9/0.99, weight decay 0.1 on matrices), 100 warm-up steps then cosine decay
to 1e-4, gradient clipping at 1, float32 on the CPU, 90/10 split of the same sorted-character ids. nanoGPT runs unmodified
from ../shared/peers/nanogpt with its run_cpu.sh (plus --always_save_checkpoint=True, so its checkpoint is the model
after 2,000 steps); it is never imported. Each side reports its own val loss at step 2,000 (nanoGPT: 20 random batches
of 12 windows; ours: the first 240 windows of the val split), and both final models are scored again by the same code,
`evaluate_lm` on every non-overlapping 64-character window of the val split (nanoGPT's checkpoint loaded into our `GPT`,
whose parameter names are nanoGPT's). Training throughput is tokens per second of training, evaluation excluded:
nanoGPT's per-iteration times summed over the iterations without an evaluation (iteration 0 excluded), ours
`train_seconds` from `train_lm`. Every run is a fresh process on the same machine with the same OMP_NUM_THREADS; the
order alternates per round (ours first in even rounds). Both sides train on the same batches from the same initial
weights. nanoGPT fixes its seed (torch.manual_seed(1337)) and draws its batches from the global generator, so round r runs
it with --eval_iters=20+r: its evaluation at iteration 0 draws 2·eval_iters batches from that generator, which shifts
the sequence of training batches (the README's configuration has eval_iters=20). Our side builds its GPT after
torch.manual_seed(1337), which gives nanoGPT's initial weights because the layers are created in nanoGPT's order, and
replays nanoGPT's random draws (the first batch, then 2·eval_iters evaluation batches every 250 iterations and one
training batch per iteration) to hand `train_lm` the same window starts (`starts=`). Checked in every nanoGPT round: our
replay of its iteration-0 evaluation gives the losses it printed. Rounds that shift one stream are not independent
samples, so the report compares the two sides round by round (same batches: the val losses must agree up to float
rounding) and does not treat the rounds as seeds.

    flock /tmp/fm_cpu.lock env OMP_NUM_THREADS=2 FM_COURSE_DATA=/tmp/canon python tools/bench_lm.py --rounds 1 --out results/lm_vs_nanogpt.json
"""
from __future__ import annotations
import argparse, json, os, platform, re, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT.parent / 'shared' / 'peers' / 'nanogpt'
CONFIG = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, steps=2000, dropout=0.0, bias=False, lr=1e-3,
              min_lr=1e-4, warmup=100, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0, eval_every=250, init_seed=1337)
TOKENS_PER_STEP = CONFIG['batch_size'] * CONFIG['block_size']


def data():
    import torch
    from fm_course.data import load_tinyshakespeare
    from fm_course.lm import CharTokenizer, split_ids
    text = load_tinyshakespeare()
    tok = CharTokenizer(text)
    return tok, split_ids(torch.tensor(tok.encode(text)), 0.9)


def run_ours(seed: int) -> dict:
    "Our run of round `seed`: nanoGPT's initial weights and the batches of its run with eval_iters = 20 + seed."
    import torch
    from fm_course.core import seed_everything
    from fm_course.lm import GPT, GPTConfig, evaluate_lm, train_lm
    t0 = time.perf_counter()
    tok, (train_ids, val_ids) = data()
    c = CONFIG
    seed_everything(c['init_seed'])                 # nanoGPT's seed: its initial weights (see replay_step0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=c['block_size'], n_layer=c['n_layer'], n_head=c['n_head'],
                          n_embd=c['n_embd'], dropout=c['dropout'], bias=c['bias']))
    starts = nanogpt_starts(20 + seed, c['steps'], len(train_ids), len(val_ids), tok.vocab_size)
    h = train_lm(model, train_ids, steps=c['steps'], batch_size=c['batch_size'], lr=c['lr'], min_lr=c['min_lr'], warmup=c['warmup'],
                 weight_decay=c['weight_decay'], betas=c['betas'], grad_clip=c['grad_clip'], eval_ids=val_ids,
                 eval_every=c['eval_every'], eval_windows=240, seed=seed, device='cpu', starts=starts)
    seconds = time.perf_counter() - t0
    return dict(threads=torch.get_num_threads(), evals=[{k: r[k] for k in ('step', 'train_loss', 'val_loss')} for r in h],
                own_val_loss=h[-1]['val_loss'], same_protocol_val_loss=evaluate_lm(model, val_ids, c['block_size']),
                train_seconds=h[-1]['train_seconds'], tokens_per_s=h[-1]['tokens'] / h[-1]['train_seconds'], seconds=seconds)


def nanogpt_starts(eval_iters: int, steps: int, n_train: int, n_val: int, vocab_size: int):
    """The window starts of nanoGPT's training batches, iterations 0…steps-1, replayed from its global generator: seed,
    model construction, the batch fetched before the loop, then per iteration the evaluation draws (when it % eval_every
    == 0: eval_iters train and eval_iters val batches) and the prefetch of the next batch."""
    import torch
    from fm_course.lm import GPT, GPTConfig
    c, T, B = CONFIG, CONFIG['block_size'], CONFIG['batch_size']
    torch.manual_seed(c['init_seed'])
    GPT(GPTConfig(vocab_size=vocab_size, block_size=T, n_layer=c['n_layer'], n_head=c['n_head'], n_embd=c['n_embd'], dropout=0.0, bias=c['bias']))
    out = [torch.randint(n_train - T, (B,))]                                        # X, Y = get_batch('train') before the loop
    for it in range(steps - 1):
        if it % c['eval_every'] == 0:
            for n in (n_train, n_val):
                for _ in range(eval_iters): torch.randint(n - T, (B,))
        out.append(torch.randint(n_train - T, (B,)))                                 # the prefetch during iteration it
    return torch.stack(out)


def replay_step0(eval_iters: int) -> dict:
    "nanoGPT's iteration-0 evaluation replayed with our GPT: seed, model, the first training batch, then eval_iters batches per split."
    import torch
    from fm_course.lm import GPT, GPTConfig
    tok, (train_ids, val_ids) = data()
    c, T, B = CONFIG, CONFIG['block_size'], CONFIG['batch_size']
    torch.manual_seed(c['init_seed'])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=c['n_layer'], n_head=c['n_head'], n_embd=c['n_embd'], dropout=0.0, bias=c['bias'])).eval()
    torch.randint(len(train_ids) - T, (B,))                                   # train.py: X, Y = get_batch('train') before the loop
    out = {}
    with torch.no_grad():
        for split, d in (('train', train_ids.long()), ('val', val_ids.long())):
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                ix = torch.randint(len(d) - T, (B,))
                x, y = torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + 1 + T] for i in ix])
                losses[k] = model(x, y)[1].item()
            out[split] = round(losses.mean().item(), 4)
    return out


def run_nanogpt(work: Path, eval_iters: int) -> dict:
    import torch
    from fm_course.lm import GPT, GPTConfig, evaluate_lm
    t0 = time.perf_counter()
    cmd = ['bash', str(PEER / 'run_cpu.sh'), sys.executable, str(work), '--always_save_checkpoint=True', f'--eval_iters={eval_iters}']
    if CONFIG['steps'] != 2000:   # a shortened trial of the tool itself (--steps), never the report
        cmd += [f"--max_iters={CONFIG['steps']}", f"--lr_decay_iters={CONFIG['steps']}", f"--eval_interval={CONFIG['eval_every']}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode: sys.exit(f"nanoGPT failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    iters = [(int(i), float(ms)) for i, ms in re.findall(r'^iter (\d+): loss [\d.]+, time ([\d.]+)ms', proc.stdout, re.M)]
    evals = [dict(step=int(s), train_loss=float(a), val_loss=float(b))
             for s, a, b in re.findall(r'^step (\d+): train loss ([\d.]+), val loss ([\d.]+)', proc.stdout, re.M)]
    timed = [ms for i, ms in iters if i > 0 and i % CONFIG['eval_every'] != 0 and i <= CONFIG['steps']]
    ckpt = torch.load(work / 'out-shakespeare-char' / 'ckpt.pt', map_location='cpu', weights_only=False)
    a = ckpt['model_args']
    model = GPT(GPTConfig(vocab_size=a['vocab_size'], block_size=a['block_size'], n_layer=a['n_layer'], n_head=a['n_head'],
                          n_embd=a['n_embd'], dropout=0.0, bias=a['bias']))
    model.load_state_dict(ckpt['model'])   # strict: nanoGPT's parameter names are ours
    _, (_, val_ids) = data()
    own = [e for e in evals if e['step'] == CONFIG['steps']]
    step0, replay = next(e for e in evals if e['step'] == 0), replay_step0(eval_iters)
    same_init = step0['train_loss'] == replay['train'] and step0['val_loss'] == replay['val']
    return dict(eval_iters=eval_iters, step0_losses=dict(nanogpt=[step0['train_loss'], step0['val_loss']], ours_replay=[replay['train'], replay['val']]),
                same_initial_weights=same_init, evals=evals, checkpoint_iter=ckpt['iter_num'], own_val_loss=own[0]['val_loss'] if own else None,
                same_protocol_val_loss=evaluate_lm(model, val_ids, CONFIG['block_size']), timed_iterations=len(timed),
                train_seconds=sum(timed) / 1000, tokens_per_s=len(timed) * TOKENS_PER_STEP / (sum(timed) / 1000), seconds=seconds,
                median_iter_ms=statistics.median(timed))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=1, help='runs of each side')
    ap.add_argument('--out', help='the JSON report (results/lm_vs_nanogpt.json for the course)')
    ap.add_argument('--work', default=None, help="nanoGPT's work folder (data, checkpoint); default: a folder next to --out")
    ap.add_argument('--steps', type=int, default=2000, help='training steps (2,000 for the report; fewer only to try the tool)')
    ap.add_argument('--one', choices=['ours', 'nanogpt'], help=argparse.SUPPRESS)
    ap.add_argument('--seed', type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.steps != 2000: CONFIG.update(steps=a.steps, eval_every=max(1, min(250, a.steps // 2)))
    if a.one:   # child process: one run, JSON on stdout
        print(json.dumps(run_ours(a.seed) if a.one == 'ours' else run_nanogpt(Path(a.work), 20 + a.seed))); return
    if not a.out: ap.error('--out is required (results/lm_vs_nanogpt.json for the course)')
    out = Path(a.out).resolve()
    work = Path(a.work or out.parent / 'nanogpt_work').resolve()
    runs = {'ours': [], 'nanogpt': []}
    for r in range(a.rounds):
        for impl in (('ours', 'nanogpt') if r % 2 == 0 else ('nanogpt', 'ours')):
            cmd = [sys.executable, __file__, '--one', impl, '--seed', str(r), '--work', str(work), '--steps', str(a.steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode: sys.exit(f"{impl} round {r} failed:\n{proc.stderr[-3000:]}")
            run = dict(round=r, **json.loads(proc.stdout.strip().splitlines()[-1]))
            runs[impl].append(run)
            print(f"{impl:7s} round {r}: val loss {run['own_val_loss']:.4f} (own protocol), {run['same_protocol_val_loss']:.4f} "
                  f"(whole val split); {run['tokens_per_s']:,.0f} tokens/s; {run['seconds']:.0f} s in all", flush=True)
    summary = {impl: dict(runs=len(rs), **{k: statistics.mean(r[k] for r in rs) for k in ('own_val_loss', 'same_protocol_val_loss', 'tokens_per_s', 'seconds')})
               for impl, rs in runs.items()}
    summary['throughput_ratio_ours_over_nanogpt'] = summary['ours']['tokens_per_s'] / summary['nanogpt']['tokens_per_s']
    summary['same_initial_weights_every_round'] = all(r['same_initial_weights'] for r in runs['nanogpt'])
    diffs = [o['same_protocol_val_loss'] - n['same_protocol_val_loss'] for o, n in zip(runs['ours'], runs['nanogpt'])]
    summary['val_loss_difference_ours_minus_nanogpt_per_round'] = diffs
    summary['largest_val_loss_difference'] = max(abs(d) for d in diffs)
    report = dict(protocol=' '.join(__doc__.split('\n\n')[1].split()), config=CONFIG, upstream_commit=(PEER / 'UPSTREAM_COMMIT').read_text().strip(),
                  machine=f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
                  omp_num_threads=os.environ.get('OMP_NUM_THREADS'), date=time.strftime('%Y-%m-%d'), summary=summary, runs=runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
