import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fm_course.core import seed_everything
from fm_course.models import MLP, SentenceClassifier, SmallCNN, masked_mean
from fm_course.train import History, LengthBuckets, TensorLoader, accuracy, evaluate, finetune, fit, get_preds, l2sp_penalty


def _data(n=64):
    g = seed_everything(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_fit_history_and_determinism():
    def run():
        x, y = _data(); seed_everything(0)
        m = nn.Linear(4, 3)
        h = fit(m, TensorLoader(x, y, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)),
                loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=2,
                valid_dl=TensorLoader(x, y, batch_size=64), metrics={'acc': accuracy}, progress=False)
        return h
    a, b = run(), run()
    assert len(a) == 2 and a['train_loss'] == b['train_loss'] and set(a.last) >= {'train_loss', 'valid_loss', 'valid_acc', 'seconds'}


def test_fit_with_progress_and_clipping():
    x, y = _data(); m = nn.Linear(4, 3)
    h = fit(m, TensorLoader(x, y, batch_size=16), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=1, clip_grad=0.5, progress=True)
    assert isinstance(h, History) and len(h) == 1


@pytest.mark.parametrize('kw, err, msg', [
    (dict(epochs=0), ValueError, 'epochs'), (dict(epochs=1.5), TypeError, 'epochs'), (dict(amp=1), TypeError, 'amp'),
    (dict(clip_grad=-1.0), ValueError, 'clip_grad'), (dict(patience=2), ValueError, 'patience needs a valid_dl'),
    (dict(patience=0), ValueError, 'patience must be')])
def test_fit_bad_input(kw, err, msg):
    x, y = _data(); m = nn.Linear(4, 3)
    args = dict(loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=1) | kw
    with pytest.raises(err, match=msg): fit(m, TensorLoader(x, y), **args)
    with pytest.raises(TypeError, match='model'): fit('m', TensorLoader(x, y), loss_fn=F.cross_entropy, opt=args['opt'], epochs=1)
    with pytest.raises(TypeError, match='opt'): fit(m, TensorLoader(x, y), loss_fn=F.cross_entropy, opt='sgd', epochs=1)


def test_tensor_loader_bad_input():
    with pytest.raises(TypeError, match='at least one tensor'): TensorLoader()
    with pytest.raises(TypeError, match=r'tensors\[1\]'): TensorLoader(torch.zeros(3), [1, 2, 3])
    with pytest.raises(ValueError, match='same first dimension'): TensorLoader(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match='batch_size'): TensorLoader(torch.zeros(3), batch_size=-1)
    with pytest.raises(TypeError, match='shuffle'): TensorLoader(torch.zeros(3), shuffle=1)
    with pytest.raises(TypeError, match='tfm'): TensorLoader(torch.zeros(3), tfm='normalise')


def test_evaluate_and_preds():
    x, y = _data(); m = nn.Linear(4, 3)
    ev = evaluate(m, TensorLoader(x, y, batch_size=10), F.cross_entropy, {'acc': accuracy})
    logits, targets = get_preds(m, TensorLoader(x, y, batch_size=10))
    assert abs(ev['loss'] - F.cross_entropy(logits, targets).item()) < 1e-5
    assert abs(ev['acc'] - accuracy(logits, targets).item()) < 1e-6
    with pytest.raises(ValueError, match='no batches'): evaluate(m, [], F.cross_entropy)
    with pytest.raises(ValueError, match='no batches'): get_preds(m, [])
    with pytest.raises(TypeError, match='model'): evaluate('m', [], F.cross_entropy)
    with pytest.raises(ValueError, match='logits must be'): accuracy(torch.zeros(3), torch.zeros(3))


def test_models_shapes_and_bad_input():
    assert MLP((10, 5, 2))(torch.zeros(4, 10)).shape == (4, 2)
    assert SmallCNN(width=4)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(TypeError, match='sizes'): MLP('784,10')
    with pytest.raises(TypeError, match=r'sizes\[0\]'): MLP((7.5, 3))
    with pytest.raises(ValueError, match='dropout'): MLP(dropout=-0.1)
    with pytest.raises(TypeError, match='width'): SmallCNN(width=2.0)
    with pytest.raises(TypeError, match='act'): SmallCNN(act='relu')
    with pytest.raises(TypeError, match='act'): MLP(act='relu')
    with pytest.raises(ValueError, match='x must be'): SmallCNN(width=4)(torch.zeros(2, 1, 32, 32))


def test_amp_switch_reaches_evaluation(monkeypatch):
    "fit(amp=False) must turn autocast off in its validation passes too (and evaluate/get_preds take the switch)."
    import fm_course.train as train
    seen, real = [], train.autocast
    monkeypatch.setattr(train, 'autocast', lambda device, enabled=True: (seen.append(enabled), real(device, enabled))[1])
    x, y = _data(); m = nn.Linear(4, 3)
    fit(m, TensorLoader(x, y, batch_size=32), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1), epochs=1,
        valid_dl=TensorLoader(x, y, batch_size=32), amp=False, progress=False)
    assert seen and not any(seen)
    seen.clear(); get_preds(m, TensorLoader(x, y, batch_size=32), amp=False); evaluate(m, TensorLoader(x, y), F.cross_entropy, amp=False)
    assert seen and not any(seen)


def test_history_edge_cases():
    h = History()
    assert len(h) == 0 and h.last == {} and h['train_loss'] == [] and list(h) == [] and h.columns == []
    with pytest.raises(IndexError): h[0]
    with pytest.raises(TypeError, match='key'): h[True]
    with pytest.raises(TypeError, match='row'): h.append([1, 2])
    h.append({'epoch': 1}); assert h[0:5] == History([{'epoch': 1}])


@pytest.mark.parametrize('n,bs,world,drop_last', [(10, 2, 2, False), (11, 3, 2, False), (11, 3, 2, True), (5, 1, 4, False), (7, 4, 3, False)])
def test_tensor_loader_shards_by_rank(monkeypatch, n, bs, world, drop_last):
    "Under torchrun each rank gets a disjoint part of each batch; together the parts are the one-process batch of bs*world rows."
    import fm_course.train as train
    x = torch.arange(n)
    one = [b[0].tolist() for b in TensorLoader(x, batch_size=bs * world, drop_last=drop_last)]
    parts = []
    for rank in range(world):
        monkeypatch.setattr(train, 'dist_info', lambda rank=rank: (rank, world))
        dl = TensorLoader(x, batch_size=bs, drop_last=drop_last)
        parts.append([b[0].tolist() for b in dl])
        assert len(dl) == len(parts[-1])
    rows = sorted(r for p in parts for b in p for r in b)
    assert rows == sorted(r for b in one for r in b)            # disjoint, and together every row of the epoch
    for i, batch in enumerate(one):                              # batch i of one process = the ranks' i-th parts, in rank order
        assert sum((p[i] for p in parts if i < len(p)), []) == batch


def test_fit_under_torchrun_needs_drop_last(monkeypatch):
    import fm_course.train as train
    monkeypatch.setattr(train, 'dist_info', lambda: (0, 2))
    x, y = _data(); m = nn.Linear(4, 3)
    with pytest.raises(ValueError, match='drop_last'):
        fit(m, TensorLoader(x, y, batch_size=8), loss_fn=F.cross_entropy, opt=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=1, progress=False)


# ---------------------------------------------------------------- fine-tuning (finetune, l2sp_penalty)
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))


def _dl(n=16):
    return TensorLoader(torch.randn(n, 6, generator=torch.Generator().manual_seed(0)), torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(1)), batch_size=4)


@pytest.mark.parametrize('kw, err, msg', [
    (dict(lr=0.0), ValueError, 'lr'), (dict(epochs=0), ValueError, 'epochs'), (dict(warmup=1.0), ValueError, 'warmup'),
    (dict(l2sp=-1.0), ValueError, 'l2sp'), (dict(weight_decay=-0.1), ValueError, 'weight_decay'), (dict(lr='1e-3'), TypeError, 'lr'),
    (dict(l2sp=1.0, l2sp_skip='2'), TypeError, 'l2sp_skip'), (dict(l2sp=1.0, l2sp_skip=('0', '2')), ValueError, 'l2sp_skip'),
    (dict(clip_grad=0.0), ValueError, 'clip_grad')])
def test_finetune_bad_inputs(kw, err, msg):
    with pytest.raises(err, match=msg): finetune(_mlp(), _dl(), **(dict(epochs=1, lr=1e-3, device='cpu') | kw))
    with pytest.raises(TypeError, match='model'): finetune('mlp', _dl(), epochs=1, lr=1e-3)


def test_finetune_returns_history_with_warmup_and_l2sp():
    h = finetune(_mlp(), _dl(), epochs=2, lr=1e-2, valid_dl=_dl(), warmup=0.25, l2sp=0.1, device='cpu')
    assert isinstance(h, History) and len(h) == 2 and 'valid_acc' in h.columns


def test_finetune_huge_l2sp_keeps_the_start_and_l2sp_skip_frees_the_head():
    "Huge L2-SP holds every penalised parameter at its start; a skipped head still trains."
    model = _mlp(); start = {k: v.clone() for k, v in model.state_dict().items()}
    finetune(model, _dl(), epochs=3, lr=1e-3, l2sp=1e6, clip_grad=None, device='cpu')
    assert max((model.state_dict()[k] - v).abs().max().item() for k, v in start.items()) < 1e-2
    model = _mlp()
    finetune(model, _dl(), epochs=3, lr=1e-2, l2sp=1e6, l2sp_skip=('2',), clip_grad=None, device='cpu')
    assert (model[0].weight - start['0.weight']).abs().max() < 1e-2
    assert (model[2].weight - start['2.weight']).abs().max() > 1e-2


def test_l2sp_penalty_bad_inputs():
    with pytest.raises(ValueError, match='alpha'): l2sp_penalty(_mlp(), {}, -1.0)
    with pytest.raises(ValueError, match='start names none'): l2sp_penalty(_mlp(), {'other': torch.zeros(1)}, 1.0)
    with pytest.raises(TypeError, match='start'): l2sp_penalty(_mlp(), [1, 2], 1.0)
    with pytest.raises(TypeError, match='model'): l2sp_penalty('mlp', {}, 1.0)


# ---------------------------------------------------------------- text: LengthBuckets, masked_mean, SentenceClassifier
def test_length_buckets_bad_inputs_and_no_shuffle():
    seqs = [[1] * n for n in (5, 2, 9)]
    with pytest.raises(ValueError, match='batch_size'): LengthBuckets(seqs, torch.arange(3), 0, 0)
    with pytest.raises(TypeError, match='batch_size'): LengthBuckets(seqs, torch.arange(3), 2.0, 0)
    lb = LengthBuckets(seqs, torch.arange(3), 2, pad_token_id=7, device='cpu')
    assert [b[1].tolist() for b in lb] == [[1, 0], [2]]                       # sorted by length, the same order every epoch
    assert lb.batches[0][0].tolist() == [[1, 1, 7, 7, 7], [1, 1, 1, 1, 1]]


def test_masked_mean_bad_inputs_and_dtypes():
    h = torch.randn(2, 3, 4)
    with pytest.raises(TypeError, match='mask'): masked_mean(h, [[1, 1, 1]] * 2)
    with pytest.raises(TypeError, match='h'): masked_mean(h.tolist(), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r'h must be \[B, L, d\]'): masked_mean(h[0], torch.ones(3))
    bool_mask, int_mask = torch.tensor([[True, False, True], [True, True, True]]), torch.tensor([[1, 0, 1], [1, 1, 1]])
    assert torch.equal(masked_mean(h, bool_mask), masked_mean(h, int_mask))


def _bert_cfg():
    from transformers import BertConfig
    return BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16, pad_token_id=0)


def test_sentence_classifier_loads_an_encoder_and_rejects_a_wrong_one():
    from transformers import BertModel
    cfg = _bert_cfg(); torch.manual_seed(0)
    enc = BertModel(cfg, add_pooling_layer=False)
    clf = SentenceClassifier(cfg, encoder_state=enc.state_dict())
    assert torch.equal(clf.encoder.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)
    assert clf(torch.randint(1, 60, (3, 16))).shape == (3, 2)
    with pytest.raises(ValueError, match='encoder_state does not fit'): SentenceClassifier(cfg, encoder_state={'nonsense.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='n_classes'): SentenceClassifier(cfg, n_classes=1)
    with pytest.raises(ValueError, match='dropout'): SentenceClassifier(cfg, dropout=1.0)


def test_sentence_classifier_pools_as_the_inline_mean_it_replaced():
    "SentenceClassifier.forward pools with masked_mean; the values must be those of the inline mean it replaced, to the bit."
    cfg = _bert_cfg(); torch.manual_seed(0)
    clf = SentenceClassifier(cfg).eval()
    ids = torch.randint(1, 60, (4, 10)); ids[0, 6:] = 0; ids[2, 3:] = 0
    mask = ids != 0
    with torch.no_grad():
        h = clf.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        inline = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        assert torch.equal(clf(ids), clf.head(inline))
