"""``tinybptt agreement``: does the decision at "sits" still reach "the cat"?

Models read a sentence of the agreement grammar (``tinybptt.tasks.agreement``) up
to its main verb and say whether the verb is singular or plural.  The subject can
be 20 words back, behind nouns of the other number (attractors).  This app trains
a tanh RNN, an LSTM, a GRU -- and a one-layer causal self-attention model when
``tinybptt.nn.attention`` is there -- on the same sentences, prints their
accuracy by distance and by number of attractors, and then shows, for one sentence,
each model's *connectivity* (``tinybptt.inspect.connectivity``): how strongly its
decision depends on each word, before and after training.

``python -m tinybptt.apps.agreement`` (``tinybptt agreement``) runs it with the
defaults (a few minutes on two cores); ``run(...)`` is the same as a function
returning a dict.  Models: ``AgreementRNN`` (embedding -> RNN/LSTM/GRU -> linear
read-out at the decision step) and ``AgreementAttention``; both have ``embed(ids)``
and ``forward_embedded(x, positions)``, which is what ``connectivity`` needs.
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from .. import display, nn, optim
from ..autograd import no_grad
from ..inspect.connectivity import Connectivity, connectivity, plot_rows, render_rows
from ..nn import functional as F
from ..tasks import agreement as grammar_mod
from .train import make_layer

RECURRENT = ("rnn", "lstm", "gru")
SENTENCE = ("The cat, which had been missing and had finally been found near the old barn by the river, "
            "sits on the mat.")
DISTANCE_BINS = ((0, 2), (3, 5), (6, 8), (9, 11), (12, 14), (15, 17), (18, 20))


def attention_available():
    """True when ``tinybptt.nn.attention`` provides ``AttentionClassifier`` (the attention model)."""
    try:
        from ..nn import attention
    except ImportError:
        return False
    return hasattr(attention, "AttentionClassifier")


def model_kinds():
    """The models this build can train: rnn, lstm, gru, and attention when available."""
    return RECURRENT + (("attention",) if attention_available() else ())


def _pick(out, positions):
    """Rows ``out[positions[b], b]`` of a (T, B, H) tensor: each sequence's state at its decision step."""
    T, B = out.shape[0], out.shape[1]
    positions = np.full(B, T - 1) if positions is None else np.asarray(positions)
    return out[positions, np.arange(B)]


class AgreementRNN(nn.Module):
    """Embedding -> one recurrent layer (``cell``: rnn, lstm or gru) -> linear read-out at the decision step."""

    def __init__(self, cell, vocab_size, embed_dim=32, hidden_size=64, dtype=np.float32):
        super().__init__()
        self.kind = cell
        self.embedding = nn.Embedding(vocab_size, embed_dim, dtype=dtype)
        self.rnn = make_layer(cell, embed_dim, hidden_size, dtype=dtype)
        self.head = nn.Linear(hidden_size, 2, dtype=dtype)

    def embed(self, ids):
        """(T, B) ids -> (T, B, embed_dim): what the recurrent layer reads."""
        return self.embedding(ids)

    def forward_embedded(self, x, positions=None):
        """Logits (B, 2) at ``positions`` (B,) (default: the last step) from embedded input x (T, B, E)."""
        return self.head(_pick(self.rnn(x)[0], positions))

    def forward(self, ids, positions=None):
        return self.forward_embedded(self.embed(ids), positions)


class AgreementAttention(nn.Module):
    """``nn.attention.AttentionClassifier`` (causal, on one-hot words), read out at each sentence's decision step.

    Step t attends to steps 0..t only, so the decision sees what a recurrent model
    would have read -- but reaches every earlier word in one step, without a chain.
    """

    def __init__(self, vocab_size, embed_dim=32, num_heads=2, dtype=np.float32):
        from ..nn.attention import AttentionClassifier

        super().__init__()
        self.kind, self.vocab_size = "attention", vocab_size
        self.clf = AttentionClassifier(vocab_size, 2, embed_dim, num_heads, causal=True, dtype=dtype)

    def embed(self, ids):
        """(T, B) ids -> (T, B, embed_dim): the classifier's embedding of each one-hot word."""
        return self.clf.embed(np.eye(self.vocab_size, dtype=self.clf.dtype)[np.asarray(ids)])

    def forward_embedded(self, x, positions=None):
        """Logits (B, 2) at ``positions`` (B,) (default: the last step) from embedded input x (T, B, E)."""
        if positions is None or np.all(np.asarray(positions) == np.asarray(positions).flat[0]):
            return self.clf.forward_embedded(x, -1 if positions is None else int(np.asarray(positions).flat[0]))
        from ..nn.attention import causal_mask

        # sentences of one batch decide at different steps: the classifier's own layers, each
        # sequence read out at its own step (the classifier reads out one step for the whole batch)
        h = self.clf.positions(x)
        a = self.clf.attn(h, h, h, attn_mask=causal_mask(h.shape[0]), need_weights=False)[0]
        return self.clf.head(_pick(h + a, positions))

    def forward(self, ids, positions=None):
        return self.forward_embedded(self.embed(ids), positions)


def build_model(kind, vocab_size, embed_dim=32, hidden_size=64, dtype=np.float32, seed=0):
    """One model of ``model_kinds()``, seeded."""
    nn.manual_seed(seed)
    if kind in RECURRENT:
        return AgreementRNN(kind, vocab_size, embed_dim, hidden_size, dtype)
    if kind == "attention":
        if not attention_available():
            raise ValueError("agreement: the attention model needs tinybptt.nn.attention.AttentionClassifier, "
                             "which this build does not have")
        return AgreementAttention(vocab_size, embed_dim, dtype=dtype)
    raise ValueError("agreement: unknown model %r; choose from %s" % (kind, ", ".join(model_kinds())))


# --------------------------------------------------------------------------- training and evaluation


def _slice(batch, idx):
    """Sub-batch ``idx`` of an ``AgreementBatch`` as (ids cropped to its longest prefix, positions, labels)."""
    pos = batch.positions[idx]
    return batch.ids[: int(pos.max()) + 1, idx], pos, batch.labels[idx]


def train_model(model, pool, steps=600, batch=64, lr=3e-3, clip=1.0, seed=0, progress=True, desc="", monitor=None):
    """Adam on cross-entropy at the decision step, batches drawn from ``pool`` (an ``AgreementBatch``).

    Returns the training history: ``[{"step", "loss"}]`` every 50 steps (running mean of
    the training loss), with ``"monitor"``: the accuracy on the ``monitor`` batch, if given.
    """
    params = model.parameters()
    opt = optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    history, run = [], []
    N = len(pool.labels)
    with display.Progress(steps, desc=desc, enabled=progress) as bar:
        for step in range(1, steps + 1):
            ids, pos, labels = _slice(pool, rng.integers(0, N, size=batch))
            loss = F.cross_entropy(model(ids, pos), labels)
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            run.append(float(loss.item()))
            bar.update(1, loss="%.3f" % run[-1])
            if step % 50 == 0 or step == steps:
                history.append({"step": step, "loss": float(np.mean(run))})
                if monitor is not None:
                    history[-1]["monitor"] = evaluate(model, monitor)["accuracy"]
                run = []
    return history


def steps_to_learn(history, level=0.9):
    """The first recorded step whose monitor accuracy reached ``level`` (None if it never did)."""
    return next((h["step"] for h in history if h.get("monitor", 0.0) >= level), None)


def evaluate(model, test, chunk=256):
    """Accuracy of ``model`` on ``test`` overall, by distance and by attractor count."""
    correct = np.zeros(len(test.labels), dtype=bool)
    with no_grad():
        for a in range(0, len(correct), chunk):
            idx = np.arange(a, min(a + chunk, len(correct)))
            ids, pos, labels = _slice(test, idx)
            correct[idx] = np.asarray(model(ids, pos).data).argmax(axis=1) == labels
    bins = np.array([next(k for k, (lo, hi) in enumerate(DISTANCE_BINS) if lo <= d <= hi) for d in test.distance])
    by_bin = grammar_mod.accuracy_by(correct, bins)
    return {"accuracy": float(correct.mean()), "n": int(len(correct)),
            "by_distance": {"%d-%d" % DISTANCE_BINS[k]: v for k, v in by_bin.items()},
            "by_attractors": {str(k): v for k, v in grammar_mod.accuracy_by(correct, test.attractors).items()},
            "with_attractors": float(correct[test.attractors > 0].mean()) if np.any(test.attractors > 0) else None,
            "far_with_attractors": _mean(correct[(test.attractors > 0) & (test.distance >= 12)])}


def _mean(x):
    return float(x.mean()) if len(x) else None


def verdict(ev):
    """What the accuracies say, in words: learned / partly / not (chance is 0.5)."""
    far = ev["far_with_attractors"]
    if far is None:
        return "no far sentences with attractors in the test set"
    if far >= 0.9:
        return "learned agreement across distance and attractors (%.2f on distance >= 12 with attractors)" % far
    if far <= 0.6:
        return "did NOT learn long-range agreement in this budget (%.2f on distance >= 12 with attractors; " \
               "chance 0.5)" % far
    return "learned it partly (%.2f on distance >= 12 with attractors; chance 0.5)" % far


def sentence_connectivity(model, sentence, g, output="logit"):
    """Connectivity of the decision at the verb of ``sentence`` (a ``Sentence``) over the words before it.

    y is the logit of the *correct* number (``output="loss"``: the cross-entropy).
    """
    ids = g.encode(sentence.words[: sentence.verb])[:, None]
    return connectivity(model, ids, output=output, cls=sentence.label, target=sentence.label,
                             words=sentence.words[: sentence.verb])


# --------------------------------------------------------------------------- the run


def _reach(c, subject):
    """log10 of ‖∂y/∂x_subject‖ / max_t ‖∂y/∂x_t‖: how much of the strongest dependence reaches the subject."""
    finite = [v for v in c.log10 if math.isfinite(v)]
    if not finite or not math.isfinite(c.log10[subject]):
        return None
    return float(c.log10[subject] - max(finite))


def run(models=None, steps=3000, batch=64, lr=3e-3, clip=1.0, embed_dim=32, hidden_size=64, pool_size=20000,
        per_cell=10, max_distance=20, max_attractors=4, seed=0, sentence=None, progress=True, log=print,
        attractor_weights=None):
    """Train each model on the same sentences and measure it: a dict with everything shown.

    ``models`` defaults to ``model_kinds()``.  Training sentences: ``pool_size`` drawn once
    (distance 0..``max_distance``, 0..``max_attractors`` attractors); the test set has
    ``per_cell`` fresh sentences for every feasible (distance, attractors) pair
    (``attractor_weights``: see ``Grammar.batch``; the test grid is always uniform).  The
    connectivity sentence is ``sentence`` (text; default ``SENTENCE``).
    """
    g = grammar_mod.load_grammar()
    models = list(models or model_kinds())
    t0 = time.time()
    pool = g.batch(pool_size, np.random.default_rng(seed), distances=(0, max_distance),
                   max_attractors=max_attractors, attractor_weights=attractor_weights)
    test = g.grid(per_cell, np.random.default_rng(seed + 10_000), distances=range(0, max_distance + 1),
                  attractors=range(0, max_attractors + 1))
    far = [(d, a) for d in range(12, max_distance + 1) for a in range(1, max_attractors + 1) if g.feasible(d, a)]
    monitor = g.batch(200, np.random.default_rng(seed + 20_000), pairs=[far[k % len(far)] for k in range(200)]) \
        if far else None
    probe = g.parse(sentence or SENTENCE)
    out = {"config": {"models": models, "steps": steps, "batch": batch, "lr": lr, "clip": clip, "optimizer": "adam",
                      "embed_dim": embed_dim, "hidden_size": hidden_size, "pool_size": pool_size,
                      "test_size": int(len(test.labels)), "max_distance": max_distance,
                      "max_attractors": max_attractors, "attractor_weights": attractor_weights, "seed": seed,
                      "dtype": "float32"},
           "sentence": {"words": probe.words, "subject": probe.subject, "verb": probe.verb,
                        "label": grammar_mod.LABELS[probe.label], "distance": probe.distance,
                        "attractors": probe.attractors},
           "data_seconds": time.time() - t0, "models": {}}
    for i, kind in enumerate(models):
        model = build_model(kind, g.vocab_size, embed_dim, hidden_size, seed=seed + i)
        before = sentence_connectivity(model, probe, g)
        t1 = time.time()
        history = train_model(model, pool, steps, batch, lr, clip, seed=seed + i, progress=progress,
                              desc="agreement %s" % kind, monitor=monitor)
        seconds = time.time() - t1
        ev = evaluate(model, test)
        after = sentence_connectivity(model, probe, g)
        with no_grad():
            p = np.asarray(model(g.encode(probe.words[: probe.verb])[:, None]).data)[0]
        out["models"][kind] = {"train_seconds": seconds, "history": history, "eval": ev, "verdict": verdict(ev),
                               "steps_to_90": steps_to_learn(history),
                               "before": before, "after": after,
                               "reach_before": _reach(before, probe.subject), "reach_after": _reach(after, probe.subject),
                               "sentence_prediction": grammar_mod.LABELS[int(np.argmax(p))]}
        if log is not None:
            log("%-9s %5.0f s  test accuracy %.3f  %s" % (kind, seconds, ev["accuracy"], out["models"][kind]["verdict"]))
    out["total_seconds"] = time.time() - t0
    return out


def accuracy_tables(result):
    """Two tables: accuracy by distance bin, and by attractor count (one row per model)."""
    models = result["models"]
    first = next(iter(models.values()))["eval"]
    dist_keys, attr_keys = list(first["by_distance"]), list(first["by_attractors"])
    rows_d = [[k, "%.3f" % m["eval"]["accuracy"]] + ["%.2f" % m["eval"]["by_distance"][b][0] for b in dist_keys]
              for k, m in models.items()]
    rows_a = [[k] + ["%.2f" % m["eval"]["by_attractors"][a][0] for a in attr_keys] for k, m in models.items()]
    n_d = [first["by_distance"][b][1] for b in dist_keys]
    n_a = [first["by_attractors"][a][1] for a in attr_keys]
    t1 = display.format_table(["model", "all"] + ["d %s" % b for b in dist_keys], rows_d, align="lr" + "r" * len(n_d))
    t2 = display.format_table(["model"] + ["%s attr." % a for a in attr_keys], rows_a, align="l" + "r" * len(n_a))
    return (t1 + "\n(sentences per column: %s; d = words between subject and verb)" % ", ".join(map(str, n_d)),
            t2 + "\n(sentences per column: %s)" % ", ".join(map(str, n_a)))


def report(result, color=None):
    """The text ``tinybptt agreement`` prints after training."""
    c = result["config"]
    s = result["sentence"]
    lines = ["subject-verb agreement: %d training sentences, %d steps of batch %d (Adam lr %g, clip %g), "
             "E=%d, H=%d, float32, seed %d" % (c["pool_size"], c["steps"], c["batch"], c["lr"], c["clip"],
                                               c["embed_dim"], c["hidden_size"], c["seed"]), ""]
    by_d, by_a = accuracy_tables(result)
    lines += ["test accuracy by distance (chance 0.5):", by_d, "", "test accuracy by number of attractors:", by_a, ""]
    for k, m in result["models"].items():
        when = ("first at step %d" % m["steps_to_90"]) if m["steps_to_90"] else "never, in %d steps" % c["steps"]
        lines.append("%-9s %s  (trained %.0f s)" % (k, m["verdict"], m["train_seconds"]))
        lines.append("%-9s 0.90 on held-out sentences of distance >= 12 with attractors: %s" % ("", when))
    words = s["words"]
    lines += ["", "connectivity of the decision at %r (the verb; correct: %s) to each earlier word: "
              "log10 ||dy/dx_t||, y the logit of the correct number, x_t the embedded word"
              % (words[s["verb"]], s["label"])]
    models = result["models"]
    rows = [m[w] for m in models.values() for w in ("before", "after")]
    labels = ["%s %s" % (k, w) for k in models for w in ("before", "after")]
    lines.append(render_rows(rows, labels, color=color, tail=["[%s]" % words[s["verb"]]] + words[s["verb"] + 1:]))
    lines.append("")
    for k, m in models.items():
        lines.append("%-9s at %r: ||dy/dx_%s|| / max_t ||dy/dx_t|| = %s before, %s after training; predicts %s"
                     % (k, words[s["verb"]], words[s["subject"]], _pow(m["reach_before"]), _pow(m["reach_after"]),
                        m["sentence_prediction"]))
        if m["reach_after"] is not None and m["reach_after"] < -6:
            right = "right" if m["sentence_prediction"] == s["label"] else "wrong"
            lines.append("%-9s its answer is %s, yet a change at %r reaches the decision %s times weaker than the "
                         "strongest word: the gradient from %r does not get back to %r"
                         % ("", right, words[s["subject"]], _pow(-m["reach_after"]), words[s["verb"]],
                            words[s["subject"]]))
    return "\n".join(lines)


def _pow(v):
    from ..inspect.numerics import fmt_pow10

    return "0" if v is None else fmt_pow10(v, 1)


def to_json(result):
    """The result as JSON-ready data (connectivities via their ``to_dict``)."""
    out = dict(result)
    out["models"] = {k: {kk: (vv.to_dict() if isinstance(vv, Connectivity) else vv) for kk, vv in m.items()}
                     for k, m in result["models"].items()}
    return out


def plot(result, path):
    """The sentence shaded by connectivity, one row per model before and after training (a PNG)."""
    s = result["sentence"]
    models = result["models"]
    rows = [m[w] for m in models.values() for w in ("before", "after")]
    labels = ["%s, %s training" % (k, w) for k in models for w in ("before", "after")]
    plot_rows(rows, labels, path=path, tail=["[%s]" % s["words"][s["verb"]]] + s["words"][s["verb"] + 1:],
                         title="log10 ||dy/dx_t||: the decision at %r (%s) against each earlier word"
                               % (s["words"][s["verb"]], s["label"]))
    return path


# --------------------------------------------------------------------------- command line


def build_parser(parser=None):
    """The options of ``tinybptt agreement`` (on ``parser`` when given, e.g. a sub-command's)."""
    p = parser or argparse.ArgumentParser(prog="tinybptt agreement")
    p.description = ("Train RNN, LSTM, GRU (and attention when available) on subject-verb agreement, print "
                     "accuracy by distance and attractors, and show how strongly each model's decision at the "
                     "verb depends on each earlier word (connectivity), before and after training.")
    p.add_argument("--models", default=None, help="comma-separated subset of %s" % ",".join(RECURRENT + ("attention",)))
    p.add_argument("--steps", type=int, default=3000, help="training steps per model (default 3000)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping, 0 for none (default 1)")
    p.add_argument("--embed-dim", type=int, default=32, help="embedding size (default 32)")
    p.add_argument("--hidden", type=int, default=64, help="hidden size of the recurrent models (default 64)")
    p.add_argument("--pool", type=int, default=20000, help="training sentences (default 20000)")
    p.add_argument("--per-cell", type=int, default=10,
                   help="test sentences per (distance, attractors) pair (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--sentence", default=None, help="the sentence whose connectivity is shown (grammar words; "
                   "its first present-tense main verb is the decision)")
    p.add_argument("--json", metavar="FILE", help="write every number shown, with the configuration")
    p.add_argument("--plot", metavar="PNG", help="draw the sentence shaded by connectivity per model")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    """``tinybptt agreement``; returns the exit code."""
    args = build_parser().parse_args(argv)
    models = [m.strip() for m in args.models.split(",")] if args.models else list(model_kinds())
    bad = [m for m in models if m not in model_kinds()]
    if bad:
        print("tinybptt agreement: model(s) %s not available; this build has %s"
              % (", ".join(bad), ", ".join(model_kinds())), file=sys.stderr)
        return 2
    if args.sentence:
        try:
            grammar_mod.load_grammar().parse(args.sentence)
        except ValueError as exc:
            print("tinybptt agreement: %s" % exc, file=sys.stderr)
            return 2
    if not attention_available() and not args.models:
        print("(attention: not in this build -- no tinybptt.nn.attention.AttentionClassifier; training rnn, lstm, gru)")
    result = run(models, steps=args.steps, batch=args.batch, lr=args.lr, clip=args.clip, embed_dim=args.embed_dim,
                 hidden_size=args.hidden, pool_size=args.pool, per_cell=args.per_cell, seed=args.seed,
                 sentence=args.sentence, progress=not args.quiet)
    print()
    print(report(result))
    print("\ntotal %.0f s" % result["total_seconds"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(result), f, indent=1)
        print("wrote %s" % args.json)
    if args.plot:
        plot(result, args.plot)
        print("wrote %s" % args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
