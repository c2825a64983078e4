import math

import pytest
import torch
import torch.nn.functional as F

from fm_course.train import History
from fm_course.mlm import (LengthBuckets, SentenceClassifier, check_perplexity, mask_tokens, masked_accuracy, mlm_loss, mlm_step, pack_sequences,
                           pretrain_mlm, selected_budget)


def ids(shape=(8, 32), V=100, seed=0):
    return torch.randint(5, V, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('p, err', [(0, ValueError), (-0.1, ValueError), (1.5, ValueError), ('0.15', TypeError), (True, TypeError), (None, TypeError)])
def test_mask_tokens_probability_outside_its_interval(p, err):
    with pytest.raises(err, match='mlm_probability'): mask_tokens(ids(), mask_token_id=3, vocab_size=100, mlm_probability=p)


@pytest.mark.parametrize('m, err', [(-1, ValueError), (100, ValueError), (1000, ValueError), (2.0, TypeError), (None, TypeError)])
def test_mask_tokens_mask_id_outside_vocabulary(m, err):
    with pytest.raises(err, match='mask_token_id'): mask_tokens(ids(), mask_token_id=m, vocab_size=100)


def test_mask_tokens_closed_interval_ends():
    "Every selected position masked (mask_fraction=1, random_fraction=0) and every position selected (p=1) are allowed."
    x = ids()
    out, labels = mask_tokens(x, mask_token_id=3, vocab_size=100, mlm_probability=1.0, mask_fraction=1.0, random_fraction=0.0)
    assert (labels == x).all() and (out == 3).all()


def test_mask_tokens_other_bad_inputs():
    with pytest.raises(TypeError, match='input_ids'): mask_tokens(ids().float(), mask_token_id=3, vocab_size=100)
    with pytest.raises(TypeError, match='input_ids'): mask_tokens([[1, 2]], mask_token_id=3, vocab_size=100)
    with pytest.raises(ValueError, match='special_tokens_mask'): mask_tokens(ids(), mask_token_id=3, vocab_size=100, special_tokens_mask=torch.zeros(8, 31))
    with pytest.raises(ValueError, match='vocab_size'): mask_tokens(ids(), mask_token_id=0, vocab_size=1)
    with pytest.raises(ValueError, match='mask_fraction'): mask_tokens(ids(), mask_token_id=3, vocab_size=100, mask_fraction=0.9, random_fraction=0.2)


def test_mask_tokens_contract():
    x = ids((64, 64)); before = x.clone()
    special = torch.zeros_like(x, dtype=torch.bool); special[:, :2] = True
    out, labels = mask_tokens(x, mask_token_id=3, vocab_size=100, special_tokens_mask=special, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, before) and out.shape == x.shape and out.dtype == x.dtype
    sel = labels != -100
    assert not sel[:, :2].any() and torch.equal(labels[sel], x[sel]) and torch.equal(out[~sel], x[~sel])
    again = mask_tokens(x, mask_token_id=3, vocab_size=100, special_tokens_mask=special, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], labels)
    assert ((out >= 0) & (out < 100)).all()


def test_mlm_loss_matches_cross_entropy_and_checks():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 10, 20, generator=g)
    labels = torch.full((4, 10), -100); labels[0, 3] = 5; labels[2, 7] = 19
    assert torch.allclose(mlm_loss(logits, labels), F.cross_entropy(logits.view(-1, 20), labels.view(-1), ignore_index=-100))
    with pytest.raises(ValueError, match='no position is selected'): mlm_loss(logits, torch.full((4, 10), -100))
    with pytest.raises(ValueError, match="labels' shape plus a vocabulary dimension"): mlm_loss(logits, labels[:, :5])
    with pytest.raises(ValueError, match="labels' shape plus a vocabulary dimension"): masked_accuracy(logits, labels[:3])
    with pytest.raises(TypeError, match='logits and labels must be torch.Tensors'): mlm_loss(logits.tolist(), labels)
    logits[0, 3, 5] = 100.0
    assert masked_accuracy(logits, labels).item() in (0.5, 1.0)


def test_selected_budget_and_pack_sequences():
    assert selected_budget(4096, 0.15) == math.ceil(4096 * 0.15 + 5 * math.sqrt(4096 * 0.15 * 0.85))
    assert selected_budget(10, 0.5, n_sd=100) == 10

    class Tok:   # the two attributes and the call pack_sequences uses
        cls_token_id, sep_token_id = 1, 2
        def __call__(self, texts, add_special_tokens, verbose=True): return {'input_ids': [[10 + len(w) for w in t.split()] for t in texts]}
    out = pack_sequences(['a bb ccc', 'dddd', 'ee f'] * 4, Tok(), 8)
    assert out.shape[1] == 8 and (out[:, 0] == 1).all() and (out[:, -1] == 2).all()
    with pytest.raises(ValueError, match='seq_len'): pack_sequences(['a'], Tok(), 4)
    with pytest.raises(TypeError, match='texts'): pack_sequences('a b', Tok(), 8)
    with pytest.raises(ValueError, match='fewer than one sequence'): pack_sequences(['a'], Tok(), 8)


def tiny_bert():
    from transformers import BertConfig, BertForMaskedLM
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16, pad_token_id=0)
    return cfg, BertForMaskedLM(cfg)


def test_mlm_step_equals_full_logits_loss():
    cfg, model = tiny_bert(); model.eval()
    x = ids((4, 16), V=60)
    xt, y = mask_tokens(x, mask_token_id=4, vocab_size=60, generator=torch.Generator().manual_seed(0))
    loss, acc = mlm_step(model, xt, y, k=selected_budget(64, 0.15))
    full = model(input_ids=xt, labels=y)
    assert torch.allclose(loss, full.loss, atol=1e-5) and torch.allclose(acc, masked_accuracy(full.logits, y))


def test_pretrain_mlm_runs_and_lowers_the_loss():
    cfg, model = tiny_bert()
    seqs = torch.randint(5, 12, (64, 16), generator=torch.Generator().manual_seed(0))   # a 7-token language: learnable
    log = pretrain_mlm(model, seqs, steps=60, batch_size=16, lr=3e-3, special_ids=[0, 1, 2], mask_token_id=4, eval_sequences=seqs[:8], eval_every=30, device='cpu')
    assert isinstance(log, History) and log['step'] == [30, 60] and log[-1]['eval_loss'] < math.log(60)
    with pytest.raises(ValueError, match='sequences'): pretrain_mlm(model, seqs[0], steps=1, batch_size=1, lr=1e-3, special_ids=[0], mask_token_id=4)
    with pytest.raises(ValueError, match='steps'): pretrain_mlm(model, seqs, steps=0, batch_size=1, lr=1e-3, special_ids=[0], mask_token_id=4)


def test_perplexity_checker():
    def right(logits, labels): return mlm_loss(logits, labels).exp()
    assert check_perplexity(right)
    with pytest.raises(AssertionError, match='perplexity'): check_perplexity(lambda lo, la: F.cross_entropy(lo.reshape(-1, lo.shape[-1]), la.reshape(-1).clamp(min=0)).exp())


def test_train_classifier_returns_history_and_finetune_classifier_is_deprecated():
    from fm_course.mlm import finetune_classifier, train_classifier
    cfg, _ = tiny_bert()
    x = [list(range(5, 5 + n)) for n in (3, 5, 7, 4) * 4]
    data = LengthBuckets(x, torch.tensor([0, 1] * 8), 4, pad_token_id=0, device='cpu')
    torch.manual_seed(0)
    h = train_classifier(SentenceClassifier(cfg), data, data, epochs=2, lr=1e-3, device='cpu')
    assert isinstance(h, History) and len(h) == 2 and 0 <= h[-1]['valid_acc'] <= 1
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match='train_classifier'):
        acc = finetune_classifier(SentenceClassifier(cfg), data, data, epochs=2, lr=1e-3, device='cpu')
    assert acc == h[-1]['valid_acc']
    with pytest.raises(ValueError, match='lr'): train_classifier(SentenceClassifier(cfg), data, epochs=1, lr=0.0)


def test_moved_names_are_re_exported():
    "SentenceClassifier lives in fm_course.models and LengthBuckets in fm_course.train; this module re-exports them."
    import fm_course.mlm as mlm, fm_course.models, fm_course.train
    assert mlm.SentenceClassifier is fm_course.models.SentenceClassifier and mlm.LengthBuckets is fm_course.train.LengthBuckets
    assert {'SentenceClassifier', 'LengthBuckets'} <= set(mlm.__all__)


def test_train_classifier_is_the_recipe_it_replaced_bit_for_bit():
    """train_classifier calls finetune; it must be the loop it replaced, to the bit: AdamW (`adamw`, weight decay 0.01) on every
    parameter, learning rate x max(0, 1 - s/S), gradient norm clipped at 1. With S a power of two (2 epochs x 4 batches here,
    8 x 32 in the fast profile) finetune's (S - s)/S is the same float, so the weights must be equal to the bit."""
    import torch.nn.functional as F
    from fm_course.mlm import train_classifier
    from fm_course.train import accuracy, adamw, fit
    from transformers import BertConfig
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(1, 50, (int(n),), generator=g).tolist() for n in torch.randint(3, 12, (32,), generator=g)]
    labels = torch.randint(0, 2, (32,), generator=g)

    def replaced(model, train, epochs, lr):
        opt = adamw(model.parameters(), lr=lr, weight_decay=0.01)
        total = epochs * len(train)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
        return fit(model, train, loss_fn=F.cross_entropy, opt=opt, epochs=epochs, sched=sched, clip_grad=1.0, metrics={'acc': accuracy},
                   device='cpu', progress=False)
    models = []
    for train in (replaced, lambda m, b, epochs, lr: train_classifier(m, b, epochs=epochs, lr=lr, device='cpu')):
        torch.manual_seed(0)
        model = SentenceClassifier(cfg)
        train(model, LengthBuckets(seqs, labels, 8, 0, shuffle=True, generator=torch.Generator().manual_seed(1), device='cpu'), 2, 1e-3)
        models.append(model)
    for (n, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize('mask, rand', [(0.8, 0.1), (1.0, 0.0), (0.8, 0.0), (0.8, 0.2), (0.0, 0.2), (0.0, 0.0), (0.0, 1.0)])
def test_mask_tokens_table8_ablations(mask, rand):
    "Devlin et al.'s Table 8 rows ([MASK]/same/random 80/10/10, 100/0/0, 80/0/20, 80/20/0, 0/20/80, 0/0/100) and all-random are expressible; exact shares."
    V = 50
    x = ids((400, 500), V=V)                                   # originals in [5, V): never the [MASK] id 3
    out, labels = mask_tokens(x, mask_token_id=3, vocab_size=V, mlm_probability=1.0, mask_fraction=mask, random_fraction=rand,
                              generator=torch.Generator().manual_seed(0))
    assert (labels == x).all()                                 # p = 1: every position selected
    is_mask, same = out == 3, out == x
    if rand == 0: assert (is_mask | same).all()                 # no random draw: [MASK] or the original, exactly
    if mask == 1: assert is_mask.all()
    if mask == 0 and rand == 0: assert same.all()
    n = x.numel()
    for got, want in ((is_mask, mask + rand / V), (same, 1 - mask - rand + rand / V), (~is_mask & ~same, rand * (1 - 2 / V))):
        assert abs(got.float().mean().item() - want) <= 5 * math.sqrt(want * (1 - want) / n) + 1e-12


def test_pretrain_mlm_checks_the_new_arguments():
    cfg, model = tiny_bert()
    seqs = ids((16, 16), V=60)
    kw = dict(steps=1, batch_size=2, lr=1e-3, special_ids=[0, 1, 2], mask_token_id=4, device='cpu')
    for name, value, err in [('mlm_probability', 0.0, ValueError), ('mlm_probability', 1.5, ValueError), ('mlm_probability', '0.15', TypeError),
                             ('mask_fraction', -0.1, ValueError), ('mask_fraction', 1.1, ValueError), ('random_fraction', 2, ValueError),
                             ('random_fraction', None, TypeError), ('loss_fn', 'mlm_loss', TypeError), ('callback', 3, TypeError)]:
        with pytest.raises(err, match=name): pretrain_mlm(model, seqs, **kw, **{name: value})
    with pytest.raises(ValueError, match='mask_fraction'): pretrain_mlm(model, seqs, **kw, mask_fraction=0.9, random_fraction=0.2)


def _run(**extra):
    cfg, model = tiny_bert()                                    # dropout 0.1: the global random state matters
    seqs = torch.randint(5, 12, (64, 16), generator=torch.Generator().manual_seed(0))
    log = pretrain_mlm(model, seqs, steps=5, batch_size=8, lr=3e-3, special_ids=[0, 1, 2], mask_token_id=4, eval_sequences=seqs[:8], eval_every=2, device='cpu', **extra)
    return model, [{k: v for k, v in r.items() if k != 'seconds'} for r in log], log


def test_pretrain_mlm_callback_sees_every_row_and_does_not_change_the_run():
    _, plain, _ = _run()
    seen = []
    def callback(row, model):
        seen.append((row, model))
        torch.rand(100); model.eval()                          # uses the global random state and changes the mode: neither leaks into the run
    model, rows, log = _run(callback=callback)
    assert [r for r, _ in seen] == list(log) and [r['step'] for r, _ in seen] == [2, 4, 5]   # every eval_every steps and at the end, the logged rows
    assert all(m is model for _, m in seen) and model.training
    assert rows == plain


def test_pretrain_mlm_loss_hook_and_always_mask():
    _, plain, _ = _run()
    shapes = []
    def loss_fn(logits, labels):
        shapes.append((tuple(logits.shape), tuple(labels.shape)))
        return mlm_loss(logits, labels, validate=False)
    _, rows, _ = _run(loss_fn=loss_fn)
    k = selected_budget(8 * 16, 0.15)
    assert rows == plain and shapes == [((k, 60), (k,))] * 5     # the hook replaces the training loss only, on the k gathered positions
    _, rows, _ = _run(loss_fn=lambda lo, la: 2 * mlm_loss(lo, la, validate=False))
    assert rows[0]['train_loss'] == pytest.approx(2 * plain[0]['train_loss'])
    _, rows, _ = _run(mask_fraction=1.0, random_fraction=0.0, mlm_probability=0.3)   # Table 8's 100/0/0, more positions
    assert len(rows) == 3 and all(math.isfinite(r['train_loss']) and math.isfinite(r['eval_loss']) for r in rows)


def test_whole_word_mask_checker():
    from fm_course.mlm import check_whole_word_mask

    def right(input_ids, is_continuation, *, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15, generator=None):
        pos = torch.arange(input_ids.shape[-1]).expand_as(input_ids)
        start = torch.where(is_continuation, 0, pos).cummax(-1).values     # each piece's word start
        selected = torch.rand(input_ids.shape, generator=generator).gather(-1, start) < mlm_probability   # one draw per word
        if special_tokens_mask is not None: selected &= ~special_tokens_mask
        u = torch.rand(input_ids.shape, generator=generator)
        random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator)
        out = torch.where(selected & (u < 0.8), mask_token_id, torch.where(selected & (u >= 0.8) & (u < 0.9), random_ids, input_ids))
        return out, torch.where(selected, input_ids, -100)
    assert check_whole_word_mask(right)
    pieces = lambda x, c, **kw: mask_tokens(x, **kw)                     # token-level masking splits words
    with pytest.raises(AssertionError, match='split'): check_whole_word_mask(pieces)
    def grown(x, c, *, mlm_probability, **kw):                          # a piece selected with p selects its whole word: about 1 - (1-p)^2.5 of the tokens
        return right(x, c, mlm_probability=1.0 - (1 - mlm_probability) ** 2.5, **kw)
    with pytest.raises(AssertionError, match='tokens were selected'): check_whole_word_mask(grown)


# --- the chapter's pretraining run: vocabulary, run folder, probe ---------------------------------------------------------
TINY_TEXTS = {'a': ['the film is good and the acting is great', 'the plot is bad and the pace is slow'] * 40,
              'b': ['to be or not to be that is the question'] * 40}
TINY_RECIPE = dict(vocab_size=120, seq_len=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                   steps=6, batch_size=4, eval_every=2, checkpoint_steps=(2, 4))


def test_train_wordpiece_checks_and_specials():
    from fm_course.mlm import train_wordpiece
    tok = train_wordpiece(TINY_TEXTS['a'], 120)
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 1, 2, 3, 4]
    assert len(tok) <= 120 and tok.decode(tok('the film is good')['input_ids'], skip_special_tokens=True) == 'the film is good'
    with pytest.raises(TypeError, match='texts'): train_wordpiece('a single string', 120)
    with pytest.raises(ValueError, match='vocab_size'): train_wordpiece(TINY_TEXTS['a'], 10)


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    from fm_course import mlm
    monkeypatch.setattr(mlm, 'mlm_corpus_texts', lambda: TINY_TEXTS)
    import fm_course.data
    monkeypatch.setattr(fm_course.data, 'load_sst2', lambda split, root=None: (TINY_TEXTS['a'][:8], torch.zeros(8, dtype=torch.long)))
    return mlm.pretrain_run(tmp_path/'run', TINY_RECIPE, device='cpu', verbose=False)


def test_pretrain_run_round_trip(tiny_run):
    from fm_course.mlm import evaluate_mlm, load_pretraining_run
    run = load_pretraining_run(tiny_run.folder)
    assert sorted(run.checkpoints) == [2, 4, 6] and [r['step'] for r in run.log] == [2, 4, 6]
    assert set(run.encoder_state(2)) == set(run.model.bert.state_dict())
    tok = run.tokenizer
    held = torch.stack([torch.tensor(tok(TINY_TEXTS['a'][0], padding='max_length', max_length=16)['input_ids'])] * 2)
    loss, acc = evaluate_mlm(run.model, held, special_ids=[tok.cls_token_id, tok.sep_token_id, tok.pad_token_id], mask_token_id=tok.mask_token_id, device='cpu')
    assert math.isfinite(loss) and 0 <= acc <= 1
    with pytest.raises(ValueError, match='step'): run.encoder_state(3)
    assert not list(tiny_run.folder.parent.glob('.*partial*'))                      # the working folder is gone


def test_load_pretraining_run_missing_and_corrupt(tiny_run, tmp_path):
    from fm_course.data import CorruptDataError, MissingDataError
    from fm_course.mlm import load_pretraining_run
    with pytest.raises(MissingDataError, match='make mlm-checkpoint'): load_pretraining_run(tmp_path/'nowhere')
    f = tiny_run.folder/'encoder-step000002.safetensors'
    f.write_bytes(f.read_bytes()[:-1] + b'\0')
    with pytest.raises(CorruptDataError, match='encoder-step000002.safetensors'): load_pretraining_run(tiny_run.folder)
    f.unlink()
    with pytest.raises(MissingDataError, match='encoder-step000002.safetensors'): load_pretraining_run(tiny_run.folder)


def test_pretrain_run_bad_recipe_and_interrupted(tmp_path, monkeypatch):
    from fm_course import mlm
    with pytest.raises(ValueError, match='unknown keys'): mlm.pretrain_run(tmp_path/'r', dict(TINY_RECIPE, layers=2))
    with pytest.raises(ValueError, match='checkpoint_steps'): mlm.pretrain_run(tmp_path/'r', dict(TINY_RECIPE, checkpoint_steps=(3,)))
    monkeypatch.setattr(mlm, 'mlm_corpus_texts', lambda: TINY_TEXTS)
    import fm_course.data
    monkeypatch.setattr(fm_course.data, 'load_sst2', lambda split, root=None: (TINY_TEXTS['a'][:8], torch.zeros(8, dtype=torch.long)))
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(mlm, 'pretrain_mlm', boom)
    with pytest.raises(KeyboardInterrupt): mlm.pretrain_run(tmp_path/'r', TINY_RECIPE, device='cpu', verbose=False)
    assert not (tmp_path/'r').exists() and not list(tmp_path.glob('.*'))       # nothing half-written is left


def test_committed_run_verifies():
    from fm_course.mlm import MLM_RECIPE, load_pretraining_run
    run = load_pretraining_run()                                                # the course's run, checked against its SHA-256s
    assert run.recipe == {**MLM_RECIPE, 'checkpoint_steps': list(MLM_RECIPE['checkpoint_steps'])} and run.log[-1]['step'] == MLM_RECIPE['steps']


def test_linear_probe_checks():
    from fm_course.mlm import linear_probe
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 4, generator=g), torch.zeros(60, dtype=torch.long)
    y[X[:, 0] > 0] = 1
    res = linear_probe((X[:40], y[:40]), (X[40:50], y[40:50]), (X[50:], y[50:]))
    assert res['test_acc'] >= 0.8 and res['C'] in (0.001, 0.01, 0.1, 1.0)
    with pytest.raises(ValueError, match='train'): linear_probe((X[:40], y[:39]), (X[40:50], y[40:50]), (X[50:], y[50:]))
    with pytest.raises(ValueError, match='Cs'): linear_probe((X[:40], y[:40]), (X[40:50], y[40:50]), (X[50:], y[50:]), Cs=(0,))


def test_docstrings_have_no_control_characters():
    "A LaTeX docstring written without r'' turns \\f, \\r, \\t into control characters (\\frac -> form feed + 'rac')."
    import inspect
    from fm_course import mlm
    for name in mlm.__all__:
        doc = inspect.getdoc(getattr(mlm, name)) or ''
        bad = [hex(ord(ch)) for ch in doc if ord(ch) < 32 and ch != '\n']
        assert not bad, f"{name}'s docstring has control characters {bad}"
