"""Subject-verb agreement: "the cat [that the dogs near the barn chased] ... sits / sit on the mat".

A small template grammar in the spirit of Linzen, Dupoux & Goldberg (2016) and
Marvin & Linzen (2018).  A model reads a sentence up to, not including, its main
verb and must say whether that verb is singular ("sits") or plural ("sit"): the
answer is the number of the subject noun, which may lie many words back, with
nouns of the other number (*attractors*) in between::

    the cat near the dogs that the old farmer saw often [sits]
        ^subject  ^attractor                              ^decision: singular

Two quantities are controlled exactly for every sentence:

``distance``    the number of words strictly between the subject noun and its verb
                (0: "the cat sits");
``attractors``  how many of the nouns in between have the other number.

Every word between subject and verb is unmarked for number except the nouns:
relative clauses are in the past tense ("that the dogs chased") and asides in the
pluperfect (", which had been missing ,"), so the subject is the only evidence.
Word lists and templates ship with the package in ``agreement_vocab.json``; nothing
is downloaded.  Everything is deterministic given a seed or ``numpy.random.Generator``.

``Grammar()``                       the grammar (``load_grammar()``: the shipped one, cached)
``grammar.sentence(d, a, rng)``     one ``Sentence`` with distance d and a attractors
``grammar.batch(B, rng, ...)``      an ``AgreementBatch``: prefix token ids (T, B), the decision
                                    position and the label of each sentence
``grammar.encode/decode``           words <-> ids;  ``grammar.parse(text)``: a sentence of your own
``accuracy_by(correct, keys)``      accuracy grouped by distance or by attractor count
"""
import functools
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ShapeError, integer_at_least
from .synthetic import _rng

SINGULAR, PLURAL = 0, 1
LABELS = ("singular", "plural")
PAD = "<pad>"
VOCAB_FILE = os.path.join(os.path.dirname(__file__), "agreement_vocab.json")


@dataclass
class Sentence:
    """One sentence of the grammar and what it tests.

    ``words`` the whole sentence; ``subject`` and ``verb`` index into it; ``label``
    is ``SINGULAR`` (0) or ``PLURAL`` (1), the number of the subject and of its verb;
    ``nouns`` lists the positions of the nouns between subject and verb.
    """

    words: list
    subject: int
    verb: int
    label: int
    distance: int
    attractors: int
    nouns: list = field(default_factory=list)

    @property
    def decision(self):
        """The position whose hidden state decides: the last word before the verb."""
        return self.verb - 1

    def text(self):
        return " ".join(self.words)


@dataclass
class AgreementBatch:
    """A batch of prefixes: ``ids`` (T, B) int64 (time first, ``<pad>`` = 0 after each prefix).

    ``positions`` (B,) is the index of the last word of each prefix (the decision
    step), ``labels`` (B,) the verb's number, ``distance`` and ``attractors`` (B,)
    what each sentence tests, ``sentences`` the full ``Sentence`` objects.
    """

    ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    distance: np.ndarray
    attractors: np.ndarray
    sentences: list


def _slot_range(template):
    """(fewest, most) words a template can produce: required slots, plus every optional one."""
    optional = sum(1 for w in template if w.endswith("?"))
    return len(template) - optional, len(template)


class Grammar:
    """The agreement grammar built from a vocabulary file (default: the shipped one).

    ``max_blocks`` bounds the number of noun-bearing blocks (prepositional phrases
    and relative clauses) between subject and verb.
    """

    def __init__(self, path=VOCAB_FILE, max_blocks=6):
        with open(path) as f:
            spec = json.load(f)
        self.nouns = [tuple(p) for p in spec["nouns"]]
        self.verbs = [tuple(p) for p in spec["verbs"]]
        self.lists = {"ADJ": spec["adjectives"], "ADV": spec["adverbs"], "PREP": spec["prepositions"],
                      "VPAST": spec["past_verbs"], "PART": spec["participles"]}
        self.endings = [list(e) for e in spec["endings"]]
        t = spec["templates"]
        self.subject_template = t["subject"]
        self.blocks = dict(t["blocks"])
        self.asides = [[], [t["aside_open"]], [t["aside_open"], t["aside_and"]]]
        self.aside_close, self.before_verb, self.after_verb = t["aside_close"], t["before_verb"], t["after_verb"]
        self.max_blocks = int(max_blocks)
        self.words = [PAD] + sorted(self._all_words())
        self.index = {w: i for i, w in enumerate(self.words)}
        self.noun_number = {n[k]: k for n in self.nouns for k in (SINGULAR, PLURAL)}
        self.verb_number = {v[k]: k for v in self.verbs for k in (SINGULAR, PLURAL)}

    def _all_words(self):
        words = {w for pair in self.nouns + self.verbs for w in pair}
        words |= {w for lst in self.lists.values() for w in lst}
        words |= {w for e in self.endings for w in e}
        templates = [self.subject_template, self.aside_close, self.before_verb, self.after_verb]
        templates += list(self.blocks.values()) + [t for a in self.asides for t in a]
        words |= {w for t in templates for w in t if not w.rstrip("?").isupper()}
        return words

    @property
    def vocab_size(self):
        return len(self.words)

    # ------------------------------------------------------------------ words <-> ids

    def encode(self, words):
        """Token ids (int64 array) of a list of words (or a string, split on spaces)."""
        if isinstance(words, str):
            words = words.split()
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError("agreement grammar: unknown word(s) %s; the vocabulary has %d words (Grammar().words)"
                             % (", ".join(repr(w) for w in unknown), len(self.words)))
        return np.array([self.index[w] for w in words], dtype=np.int64)

    def decode(self, ids):
        """Words of a sequence of ids (``<pad>`` dropped)."""
        return [self.words[int(i)] for i in np.asarray(ids).ravel() if int(i) != 0]

    def parse(self, text):
        """A sentence of your own, as a ``Sentence``: "The cat near the dogs sits on the mat."

        Lower-cased and split into words, commas and full stops.  The verb is the first
        present-tense main verb of the grammar ("sits", "sit", ...), the subject the first
        noun; distance and attractors are counted as for generated sentences.  Every word
        must be in the vocabulary (``ValueError`` naming the unknown ones otherwise).
        """
        words = re.findall(r"[a-z]+|[,.]", text.lower())
        self.encode(words)
        verbs = [i for i, w in enumerate(words) if w in self.verb_number]
        nouns = [i for i, w in enumerate(words) if w in self.noun_number]
        if not verbs or not nouns or nouns[0] > verbs[0]:
            raise ValueError("agreement grammar: %r needs a subject noun followed by a main verb (one of %s)"
                             % (text, ", ".join(w for v in self.verbs for w in v)))
        s, v = nouns[0], verbs[0]
        between = [i for i in nouns if s < i < v]
        number = self.verb_number[words[v]]
        attractors = sum(1 for i in between if self.noun_number[words[i]] != self.noun_number[words[s]])
        return Sentence(words, s, v, number, v - s - 1, attractors, between)

    # ------------------------------------------------------------------ generating

    @functools.lru_cache(maxsize=None)
    def structures(self, distance, attractors):
        """Every way to fill ``distance`` words holding exactly ``attractors`` opposite-number nouns.

        Each structure is ``(aside, counts)``: how many aside templates (0, 1 or 2) and how
        many blocks of each kind (in ``sorted(self.blocks)`` order).  Empty if impossible.
        """
        kinds = sorted(self.blocks)
        ranges = [_slot_range(self.blocks[k]) for k in kinds]
        before = _slot_range(self.before_verb)
        out = []
        for aside, templates in enumerate(self.asides):
            fixed = [_slot_range(t) for t in templates] + ([_slot_range(self.aside_close)] if templates else [])
            fixed.append(before)
            lo0, hi0 = sum(r[0] for r in fixed), sum(r[1] for r in fixed)
            for counts in _compositions(len(kinds), attractors, self.max_blocks):
                lo = lo0 + sum(c * r[0] for c, r in zip(counts, ranges))
                hi = hi0 + sum(c * r[1] for c, r in zip(counts, ranges))
                if lo <= distance <= hi:
                    out.append((aside, counts))
        return tuple(out)

    def feasible(self, distance, attractors):
        """True if some sentence has this distance and attractor count."""
        return distance >= 0 and 0 <= attractors <= self.max_blocks and bool(self.structures(distance, attractors))

    def sentence(self, distance, attractors, rng=None, number=None):
        """One sentence with exactly ``distance`` words and ``attractors`` attractors between subject and verb.

        ``number`` is the subject's (``SINGULAR``/``PLURAL``; random by default).
        Raises ``ValueError`` when no sentence of the grammar has these counts.
        """
        g = _rng("agreement grammar", rng)
        if not self.feasible(distance, attractors):
            raise ValueError("agreement grammar: no sentence has distance %r with %r attractors (each attractor "
                             "needs a phrase of at least 3 words; at most %d phrases)"
                             % (distance, attractors, self.max_blocks))
        options = self.structures(distance, attractors)
        aside, counts = options[int(g.integers(len(options)))]
        number = int(g.integers(2)) if number is None else int(number)
        kinds = [k for k, c in zip(sorted(self.blocks), counts) for _ in range(c)]
        g.shuffle(kinds)
        k = len(kinds)
        flips = np.zeros(k, dtype=bool)
        flips[g.choice(k, size=attractors, replace=False)] = True
        middle = [(t, None) for t in self.asides[aside]]
        middle += [(self.blocks[kind], number ^ int(flip)) for kind, flip in zip(kinds, flips)]
        middle += [(self.aside_close, None)] if aside else []
        middle += [(self.before_verb, None)]
        optional = [(i, j) for i, (t, _) in enumerate(middle) for j, w in enumerate(t) if w.endswith("?")]
        required = sum(len(t) for t, _ in middle) - len(optional)
        chosen = {optional[i] for i in g.choice(len(optional), size=distance - required, replace=False)}
        words = self._fill(self.subject_template, number, g, keep=lambda j: bool(g.integers(2)))
        subject = len(words) - 1
        nouns = []
        for i, (t, n) in enumerate(middle):
            for w in self._fill(t, n, g, keep=lambda j, i=i: (i, j) in chosen):
                if w in self.noun_number and n is not None:
                    nouns.append(len(words))
                words.append(w)
        verb = len(words)
        words.append(self.verbs[int(g.integers(len(self.verbs)))][number])
        words += self._fill(self.after_verb, number, g, keep=lambda j: True)
        return Sentence(words, subject, verb, number, verb - subject - 1, attractors, nouns)

    def _fill(self, template, number, g, keep):
        """Words of one template: categories drawn from their lists, optional slot j kept if ``keep(j)``."""
        out = []
        for j, w in enumerate(template):
            if w.endswith("?"):
                if not keep(j):
                    continue
                w = w[:-1]
            if w in ("N", "SUBJ"):
                out.append(self.nouns[int(g.integers(len(self.nouns)))][number])
            elif w == "ENDING":
                out += self.endings[int(g.integers(len(self.endings)))]
            elif w in self.lists:
                lst = self.lists[w]
                out.append(lst[int(g.integers(len(lst)))])
            else:
                out.append(w)
        return out

    def batch(self, B, rng=None, distances=(0, 20), max_attractors=4, pairs=None, attractor_weights=None):
        """``B`` sentences as an ``AgreementBatch`` of prefixes (the words before each verb).

        By default each sentence draws its distance uniformly from the inclusive range
        ``distances`` and then its attractor count from those feasible at that distance
        (at most ``max_attractors``): uniformly, or in proportion to ``attractor_weights[a]``
        (e.g. ``(0.8, 0.15, 0.05)`` makes attractors rare, as in natural text).  ``pairs``
        (a list of (distance, attractors)) gives the exact counts of each sentence instead.
        """
        B = integer_at_least("agreement batch", "the batch size B", B, 1, ShapeError)
        g = _rng("agreement batch", rng)
        if pairs is None:
            lo, hi = distances
            pairs = []
            for _ in range(int(B)):
                d = int(g.integers(lo, hi + 1))
                options = [a for a in range(max_attractors + 1) if self.feasible(d, a)]
                if attractor_weights is None:
                    pairs.append((d, options[int(g.integers(len(options)))]))
                    continue
                w = np.array([attractor_weights[a] if a < len(attractor_weights) else 0.0 for a in options])
                pairs.append((d, options[int(g.choice(len(options), p=w / w.sum()))] if w.sum() > 0 else 0))
        elif len(pairs) != B:
            raise ShapeError("agreement batch: %d (distance, attractors) pairs for a batch of %d" % (len(pairs), B))
        sentences = [self.sentence(d, a, g) for d, a in pairs]
        return self.collate(sentences)

    def collate(self, sentences):
        """An ``AgreementBatch`` from a list of ``Sentence`` objects (prefixes padded with ``<pad>``)."""
        T = max(s.verb for s in sentences)
        ids = np.zeros((T, len(sentences)), dtype=np.int64)
        for b, s in enumerate(sentences):
            ids[:s.verb, b] = self.encode(s.words[:s.verb])
        return AgreementBatch(ids, np.array([s.decision for s in sentences], dtype=np.int64),
                              np.array([s.label for s in sentences], dtype=np.int64),
                              np.array([s.distance for s in sentences], dtype=np.int64),
                              np.array([s.attractors for s in sentences], dtype=np.int64), sentences)

    def grid(self, per_cell, rng=None, distances=range(0, 21, 2), attractors=range(0, 5)):
        """A test batch with ``per_cell`` sentences for every feasible (distance, attractors) pair."""
        pairs = [(d, a) for d in distances for a in attractors if self.feasible(d, a)]
        return self.batch(len(pairs) * per_cell, rng, pairs=[p for p in pairs for _ in range(per_cell)])


def _compositions(n, at_least, at_most):
    """Tuples of ``n`` non-negative counts whose sum lies in [at_least, at_most]."""
    if n == 1:
        return [(k,) for k in range(at_least, at_most + 1)]
    out = []
    for first in range(at_most + 1):
        out += [(first,) + rest for rest in _compositions(n - 1, max(0, at_least - first), at_most - first)]
    return out


@functools.lru_cache(maxsize=1)
def load_grammar():
    """The grammar of the shipped vocabulary (built once)."""
    return Grammar()


def accuracy_by(correct, keys):
    """Accuracy grouped by key: ``{key: (accuracy, count)}``, keys in increasing order.

    ``correct`` (N,) booleans, ``keys`` (N,) ints (e.g. a batch's ``distance`` or
    ``attractors``).
    """
    correct, keys = np.asarray(correct, dtype=bool), np.asarray(keys)
    if correct.shape != keys.shape:
        raise ShapeError("accuracy_by: correct %s and keys %s must have the same shape" % (correct.shape, keys.shape))
    return {int(k): (float(correct[keys == k].mean()), int(np.sum(keys == k))) for k in np.unique(keys)}
