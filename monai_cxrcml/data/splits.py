"""Patient-level splits stratified over the multi-label matrix: K folds, an 80:20 hold-out, train/val/test.

Images of one patient always go to the same part. Parts are balanced on the patient x class matrix of positives
(a patient is positive for a class when any of their images has a known positive label) by iterative
stratification (Sechidis, Tsoumakas & Vlahavas, ECML PKDD 2011) followed by a rebalancing pass.

What :func:`iterative_stratification` guarantees: docs/design.md, "Patient-level splits".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .table import LabelTable

__all__ = [
    "iterative_stratification",
    "patient_matrix",
    "patient_folds",
    "holdout_split",
    "fold_split",
    "fold_report",
]

_TOP = 256  # candidates per side considered for a swap or chain


def _fractions(parts: int | Sequence[float]) -> np.ndarray:
    if isinstance(parts, (int, np.integer)):
        if parts < 2:
            raise ValueError(f"need at least 2 folds, got {parts}.")
        return np.full(int(parts), 1.0 / int(parts))
    r = np.asarray(parts, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2 or (r <= 0).any() or not np.isclose(r.sum(), 1.0):
        raise ValueError(f"fractions {list(parts)} must be at least two positive numbers summing to 1.")
    return r / r.sum()


def iterative_stratification(
    labels: np.ndarray, parts: int | Sequence[float] = 5, seed: int = 0, attempts: int = 8
) -> np.ndarray:
    """Assign each row of a multi-label matrix to a part, balancing every label (Sechidis et al. 2011).

    Labels are taken rarest first; each row holding that label goes to the part that still needs the most of it
    (ties: the part that needs the most rows, then at random). Rows without a label fill the parts up to size.
    A rebalancing pass then levels what the greedy order left uneven (see the module docstring). When some
    part still misses a column's share by 1 or more, the whole procedure is repeated with other tie-breaks, up
    to ``attempts`` times, and the attempt with the fewest such misses (then the lowest squared deviation) wins.

    Parameters
    ----------
    labels
        ``[P, C]`` boolean (or 0/1) matrix, one row per item (patient).
    parts
        Number of equal parts ``K``, or the fractions of the parts (e.g. ``(0.8, 0.2)``).
    seed
        Seed of the tie-breaks; the same seed and matrix always give the same assignment.
    attempts
        Maximum number of tie-break draws tried.

    Returns
    -------
    ``np.int64 [P]``: the part of each row, in ``0..K-1``.
    """
    y = np.asarray(labels).astype(bool)
    if y.ndim != 2:
        raise ValueError(f"labels must be a [P, C] matrix, got shape {y.shape}.")
    r = _fractions(parts)
    if len(y) < len(r):
        raise ValueError(f"cannot split {len(y)} patients into {len(r)} parts.")
    columns = np.concatenate([y, np.ones((len(y), 1), dtype=bool)], axis=1).astype(np.float64)  # + patient count
    best: tuple[tuple[int, float], np.ndarray] | None = None
    for attempt in range(max(1, attempts)):
        part = _rebalance(columns, _greedy(y, r, np.random.default_rng([seed, attempt])), r)
        excess = _counts(columns, part, len(r)) - np.outer(r, columns.sum(axis=0))
        score = (int((np.abs(excess) > 1 - 1e-9).sum()), float((excess**2).sum()))
        if best is None or score < best[0]:
            best = (score, part)
        if score[0] == 0:
            break
    return best[1]


def _counts(columns: np.ndarray, part: np.ndarray, k: int) -> np.ndarray:
    """``[K, C]`` column sums of the rows in each part."""
    return np.eye(k)[part].T @ columns


def _greedy(y: np.ndarray, r: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sechidis et al.'s greedy pass: ``np.int64 [P]`` part of each row."""
    (n, _), k = y.shape, len(r)
    yi = y.astype(np.float64)
    need = np.outer(r, yi.sum(axis=0))  # [K, C] positives each part still needs
    need_size = r * n
    tiebreak = rng.random((n, k))
    part = np.full(n, -1, dtype=np.int64)
    order = rng.permutation(n)
    left = y.copy()  # labels of unassigned rows
    while True:
        counts = left.sum(axis=0)
        if not counts.any():
            break
        rarest = np.flatnonzero(counts == counts[counts > 0].min())
        label = rarest[rng.integers(len(rarest))]
        for i in order[left[order, label]]:
            part[i] = _pick(need[:, label], need_size, tiebreak[i])
            need[part[i]] -= yi[i]
            need_size[part[i]] -= 1
        left[part >= 0] = False
    for i in order[part[order] < 0]:  # rows without any label
        part[i] = _pick(need_size, need_size, tiebreak[i])
        need_size[part[i]] -= 1
    return part


def _pick(primary: np.ndarray, secondary: np.ndarray, tiebreak: np.ndarray) -> int:
    best = np.flatnonzero(primary == primary.max())
    if len(best) > 1:
        best = best[secondary[best] == secondary[best].max()]
    return int(best[np.argmax(tiebreak[best])]) if len(best) > 1 else int(best[0])


def _rebalance(y: np.ndarray, part: np.ndarray, r: np.ndarray, max_passes: int = 100) -> np.ndarray:
    """Local search on F = sum over parts and columns of (count - share)^2; ``y`` [P, C] float (with a column of ones
    for the patient count), ``part`` [P] is changed in place and returned.

    Each pass visits the columns whose excess over their share differs by more than 1 between two parts; for such
    a column and pair of parts a (fuller) and b, it applies the best of these changes when it lowers F: move a row
    holding the column from a to b; swap it with a row of b that lacks the column; or pass it on through a third
    part m (a -> m, and a row holding the column m -> b). Pairs are tried from the widest gap down, and the first
    pair with an improving change is used. Moving a row with labels ``y`` from part s to d lowers F by
    ``2 y . (e_s - e_d) - 2 |y|`` (``e`` = excess over the share); two moves interact through the part they share,
    by ``4 y_p . y_q`` for a swap and ``2 y_p . y_q`` for a chain. F falls at every change, so the search ends;
    it stops after a pass without a change.
    """
    k = len(r)
    target = np.outer(r, y.sum(axis=0))
    count = _counts(y, part, k)
    weight = y.sum(axis=1)

    def top(rows: np.ndarray, source: int, dest: int, excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gain = 2 * (y[rows] @ (excess[source] - excess[dest])) - 2 * weight[rows]
        best = np.argsort(-gain, kind="stable")[:_TOP]
        return rows[best], gain[best]

    def best_change(c: int, a: int, b: int, excess: np.ndarray) -> list[tuple[int, int]] | None:
        has = y[:, c] > 0
        p, gp = top(np.flatnonzero((part == a) & has), a, b, excess)
        if not len(p):
            return None
        best, moves = gp[0], [(p[0], b)]
        partners = [(b, a, np.flatnonzero((part == b) & ~has), 4)]  # swap
        partners += [(m, b, np.flatnonzero((part == m) & has), 2) for m in range(k) if m not in (a, b)]  # chain
        for m, dest, rows, cross in partners:
            q, gq = top(rows, m, dest, excess)
            if len(q):
                gain = gp[:, None] + gq[None, :] + cross * (y[p] @ y[q].T)
                i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
                if gain[i, j] > best:
                    best, moves = gain[i, j], [(p[i], m), (q[j], dest)]
        return moves if best > 1e-9 else None

    for _ in range(max_passes):
        changed = False
        worst = np.abs(count - target).max(axis=0)  # a column is off when some part misses its share by >= 1
        for c in np.argsort(-worst, kind="stable")[: int((worst > 1 - 1e-9).sum())]:
            while True:
                excess = count - target
                gaps = [(excess[a, c] - excess[b, c], a, b) for a in range(k) for b in range(k)]
                moves = None
                for gap, a, b in sorted(gaps, key=lambda g: -g[0]):
                    if gap <= 1 + 1e-9 or (moves := best_change(c, a, b, excess)) is not None:
                        break
                if moves is None:
                    break
                for i, d in moves:
                    count[part[i]] -= y[i]
                    count[d] += y[i]
                    part[i] = d
                changed = True
        if not changed:
            break
    return part


def patient_matrix(table: LabelTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patients of a table and their class positives.

    Returns
    -------
    patients, patient_of_image, positives
        Sorted unique ``subject_id`` values ``[P]``; the patient index of each image ``np.int64 [N]``; and
        ``np.bool_ [P, C]``, True where any of the patient's images has a known positive label.
    """
    codes, patients = pd.factorize(table.frame["subject_id"], sort=True)
    positive = (table.labels > 0.5) & table.mask
    matrix = np.zeros((len(patients), positive.shape[1]), dtype=bool)
    if len(codes):
        order = np.argsort(codes, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
        matrix = np.logical_or.reduceat(positive[order], starts, axis=0)
    return np.asarray(patients), codes.astype(np.int64), matrix


def _image_parts(table: LabelTable, parts: int | Sequence[float], seed: int) -> np.ndarray:
    _, patient_of_image, positives = patient_matrix(table)
    return iterative_stratification(positives, parts, seed)[patient_of_image]


def patient_folds(table: LabelTable, num_folds: int = 5, seed: int = 0) -> np.ndarray:
    """K-fold assignment of images, stratified at patient level: ``np.int64 [N]`` in ``0..num_folds-1``."""
    return _image_parts(table, num_folds, seed)


def holdout_split(table: LabelTable, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Patient-level stratified hold-out (the paper's 80:20): ``(train_idx, test_idx)``, sorted image indices."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    part = _image_parts(table, (1 - test_fraction, test_fraction), seed)
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1)


def fold_split(
    table: LabelTable, fold: int, num_folds: int = 5, seed: int = 0, val_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test image indices of one cross-validation fold.

    Fold ``fold`` of :func:`patient_folds` is the test set (with 5 folds, the paper's 80:20 split); a validation
    set of ``val_fraction`` of the remaining patients is carved out by the same stratifier (``val_fraction=0``
    gives an empty one). Returns sorted ``np.int64`` index arrays into ``table``, disjoint by patient.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold={fold} is out of range for num_folds={num_folds}: use 0..{num_folds - 1}.")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    folds = patient_folds(table, num_folds, seed)
    test = np.flatnonzero(folds == fold)
    train = np.flatnonzero(folds != fold)
    if val_fraction == 0:
        return train, np.zeros(0, dtype=np.int64), test
    part = _image_parts(table.subset(train), (1 - val_fraction, val_fraction), seed + 1_000_003 * (fold + 1))
    return train[part == 0], train[part == 1], test


def fold_report(
    table: LabelTable, folds: np.ndarray | Mapping[str, Sequence[int]], min_positives: int = 10
) -> pd.DataFrame:
    """Positives per class in each part, with a flag for classes too thin to score there.

    Parameters
    ----------
    table
        The labelled images.
    folds
        ``[N]`` part id of each image (e.g. :func:`patient_folds`), or a mapping ``name -> image indices``
        (e.g. ``{"train": tr, "val": va, "test": te}`` from :func:`fold_split`).
    min_positives
        A class with fewer positive *patients* than this in a part is ``"thin"`` there: its AUC rests on a
        handful of people.

    Returns
    -------
    ``pd.DataFrame``, one row per (class, part) in class order: ``class, fold, images, positive_images,
    positive_patients, negative_images, status``. ``status`` is ``"unscorable"`` when the part has no positive or
    no negative image of the class (AUC undefined), ``"thin"`` as above, ``"ok"`` otherwise.
    """
    if isinstance(folds, Mapping):
        named = {str(k): np.asarray(v, dtype=np.int64) for k, v in folds.items()}
    else:
        folds = np.asarray(folds)
        if folds.shape != (len(table),):
            raise ValueError(f"folds has shape {folds.shape}; the table has {len(table)} images.")
        named = {f: np.flatnonzero(folds == f) for f in np.unique(folds).tolist()}
    _, patient_of_image, _ = patient_matrix(table)
    positive = (table.labels > 0.5) & table.mask
    negative = (table.labels <= 0.5) & table.mask
    rows = []
    for name, idx in named.items():
        pos = positive[idx]
        pos_images, neg_images = pos.sum(axis=0), negative[idx].sum(axis=0)
        pos_patients = [len(np.unique(patient_of_image[idx][pos[:, c]])) for c in range(pos.shape[1])]
        for c, class_name in enumerate(table.class_names):
            rows.append((class_name, name, len(idx), int(pos_images[c]), pos_patients[c], int(neg_images[c])))
    report = pd.DataFrame(
        rows, columns=["class", "fold", "images", "positive_images", "positive_patients", "negative_images"]
    )
    report["status"] = np.where(
        (report["positive_images"] == 0) | (report["negative_images"] == 0),
        "unscorable",
        np.where(report["positive_patients"] < min_positives, "thin", "ok"),
    )
    order = {name: i for i, name in enumerate(table.class_names)}
    return report.sort_values(by="class", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
