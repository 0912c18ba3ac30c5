"""Benchmark: monai_cxrcml's Student-t mixture EM against studenttmixture and scikit-learn's GaussianMixture.

Every method sees the same data (a K-component Student-t mixture, nu=5, with known labels). Rows marked
"same start" begin from the parameters of our k-means++ initialisation (their initialisation time is not counted),
so their log-likelihoods are directly comparable; rows marked "own init" are the packages as users run them.
Columns: wall seconds of ``fit`` (ours: initialisation included), EM iterations, mean log-likelihood per sample
(float64 ``score`` on the data) and ARI against the true labels.

Cases: (1) N=20000, d=64, K=10; (2) N=50000, d=512, K=40, rows L2-normalised like CLIP embeddings; (3) N=200000,
d=512, K=40, at most 50 iterations, ours on CUDA only ("skipped: no CUDA" elsewhere).

``--defaults``: every estimator as users run it, on case 1 for each seed of ``--seeds``: ours (float32 rows) against
studenttmixture (t, nu=4 fixed) and against scikit-learn (Gaussian limit), interleaved per seed, with the targets
(median time >= 3x faster, mean log-likelihood never more than 1e-3 below the peer's) judged PASS or FAIL; the ARI
columns (against the true components) are for reading, not judged.

``--gaussian-survey``: our Gaussian limit with and without its split-and-merge move against scikit-learn's default
on smaller t-mixture data sets (``SURVEY``), full and diagonal covariances, one seed: where the move's kind
(a cluster's core and tail) is not the optimum scikit-learn's start happens to reach.

    python benchmarks/bench_mixture.py --cases 1 2 --threads 2 [--no-own-init]
    python benchmarks/bench_mixture.py --cases 3 --device cuda [--matmul-precision high]
    python benchmarks/bench_mixture.py --defaults --seeds 0 1 2 3 4 5 6 7 --threads 2
    python benchmarks/bench_mixture.py --gaussian-survey --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from monai_cxrcml.mixture import GaussianMixture, StudentTMixture

SPEED_TARGET = 3.0
"""``--defaults``: the peer's median fit time over ours must be at least this."""

LOG_LIK_TOLERANCE = 1e-3
"""``--defaults``: our mean log-likelihood per sample may be at most this below the peer's, on every seed."""

SEPARATION = 1.5
"""Component means ~ N(0, SEPARATION^2 / d): clusters overlap enough that initialisation and tails matter."""


@dataclass
class Case:
    name: str
    n: int
    d: int
    k: int
    normalise: bool
    max_iter: int
    peers: bool


CASES = {
    "1": Case("N=20000, d=64, K=10, t(nu=5)", 20_000, 64, 10, False, 100, True),
    "2": Case("N=50000, d=512, K=40, t(nu=5), unit rows", 50_000, 512, 40, True, 100, True),
    "3": Case("N=200000, d=512, K=40, t(nu=5), unit rows, <= 50 iterations", 200_000, 512, 40, True, 50, False),
}


SURVEY = [
    Case("N=20000, d=64, K=10 (case 1)", 20_000, 64, 10, False, 100, True),
    Case("N=10000, d=32, K=10", 10_000, 32, 10, False, 100, True),
    Case("N=8000, d=16, K=8", 8_000, 16, 8, False, 100, True),
    Case("N=6000, d=16, K=6", 6_000, 16, 6, False, 100, True),
    Case("N=4000, d=8, K=5", 4_000, 8, 5, False, 100, True),
]
"""``--gaussian-survey``: t data (nu = 5) of ``make_data`` at several sizes."""


def make_data(case: Case, nu: float = 5.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of a ``K``-component t mixture with random anisotropic scales, and their component labels."""
    rng = np.random.default_rng(seed)
    n, d, k = case.n, case.d, case.k
    labels = rng.choice(k, size=n, p=rng.dirichlet(np.full(k, 5.0)))
    means = rng.normal(scale=SEPARATION / np.sqrt(d), size=(k, d))
    x = np.empty((n, d))
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
        scales = rng.uniform(0.2, 1.0, size=d) / np.sqrt(d)
        z = rng.normal(size=(rows.size, d)) * scales @ basis.T
        x[rows] = means[c] + z / np.sqrt(rng.chisquare(nu, size=(rows.size, 1)) / nu)
    if case.normalise:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


@dataclass
class Row:
    method: str
    seconds: float
    iterations: int | str
    log_lik: float
    ari: float


def _timed(fn: Callable[[], object], device: str) -> tuple[object, float]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    tick = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - tick


def estimator_params(case: Case, tol: float = 1e-3, seed: int = 0) -> dict:
    """Keyword arguments every mixture of a case is fitted with (components, tolerance, iteration cap, seed)."""
    return dict(n_components=case.k, tol=tol, max_iter=case.max_iter, random_state=seed)


def time_fit(label: str, est: StudentTMixture, x: torch.Tensor, truth: np.ndarray, x_score: torch.Tensor,
             device: str) -> Row:
    """Fit ``est`` to ``x`` ``[N, d]`` (after a warm-up fit on 64 rows), timed; scored on ``x_score`` (float64) and
    against the true labels ``truth`` ``[N]``."""
    est.fit(x[:64])  # warm-up (kernels, allocator) outside the timing
    _, seconds = _timed(lambda: est.fit(x), device)
    ari = adjusted_rand_score(truth, est.predict(x).cpu().numpy())
    label += f", {est.n_reseeded_} re-seeded" if est.n_reseeded_ else ""
    return Row(label, seconds, est.n_iter_, est.score(x_score), ari)


def run_case(case: Case, device: str, tol: float, seed: int, estimate_dof: bool, own_init: bool,
             emit: Callable[[Row], None]) -> None:
    """Fit every method on the case's data, passing each row to ``emit`` as soon as it is measured."""
    x64, truth = make_data(case)
    x32 = torch.tensor(x64, dtype=torch.float32, device=device)
    x64_t = torch.tensor(x64, device=device)
    common = estimator_params(case, tol, seed)

    def ours(label: str, est: StudentTMixture, x: torch.Tensor) -> StudentTMixture:
        emit(time_fit(label, est, x, truth, x64_t, device))
        return est

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours(f"ours t-mixture full, float32 E-step ({'nu estimated' if estimate_dof else 'nu=4'})",
             StudentTMixture(dof=4.0, estimate_dof=estimate_dof, **common), x32)
        ref = ours(f"ours t-mixture full, float64 ({'nu estimated' if estimate_dof else 'nu=4'})",
                   StudentTMixture(dof=4.0, estimate_dof=estimate_dof, **common), x64_t)
        ours(f"ours t-mixture full, float32 E-step, n_init=3 ({'nu estimated' if estimate_dof else 'nu=4'})",
             StudentTMixture(dof=4.0, estimate_dof=estimate_dof, n_init=3, **common), x32)
        ours("ours GaussianMixture full, float32 E-step", GaussianMixture(**common), x32)
        if not case.peers or device != "cpu":
            return
        init = StudentTMixture(**{**common, "max_iter": 0}).fit(x64_t)
        start = tuple(p.cpu().numpy() for p in (init.means_, init.covariances_, init.weights_))
        reg = ref.reg_covar_
        _sklearn(x64, truth, case, tol, reg, start, seed, own_init, emit)
        _studenttmixture(x64, truth, case, tol, reg, estimate_dof, start, seed, own_init, emit)


def _studenttmixture(x, truth, case, tol, reg, estimate_dof, start, seed, own_init, emit) -> None:
    from studenttmixture import EMStudentMixture

    means0, covs0, weights0 = start
    runs = (("same start", True, tol), ("own k-means init, tol 1e-5", False, 1e-5))
    for label, same_start, its_tol in runs if own_init else runs[:1]:
        model = EMStudentMixture(
            n_components=case.k, tol=its_tol, reg_covar=reg, max_iter=case.max_iter, df=4.0,
            fixed_df=not estimate_dof, random_state=seed, init_type="kmeans",
        )
        if same_start:
            chol0 = np.linalg.cholesky(covs0)
            model.initialize_params = lambda *_: (
                means0.copy(), covs0.transpose(1, 2, 0).copy(), weights0.copy(), chol0.transpose(1, 2, 0).copy()
            )
        iterations = {"n": 0}
        e_step = model.Estep

        def counting_e_step(*args, **kwargs):
            iterations["n"] += 1
            return e_step(*args, **kwargs)

        model.Estep = counting_e_step
        tick = time.perf_counter()
        _, _, loc, scale, weights, dofs, chol = model.fitting_restart(x, seed)
        seconds = time.perf_counter() - tick
        model.location_, model.scale_, model.mix_weights_, model.df_, model.scale_cholesky_ = (
            loc, scale, weights, dofs, chol
        )
        emit(Row(f"studenttmixture EM ({label})", seconds, iterations["n"], float(model.score(x)),
                 adjusted_rand_score(truth, model.predict(x))))


def _sklearn(x, truth, case, tol, reg, start, seed, own_init, emit) -> None:
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    means0, covs0, weights0 = start
    runs = (
        ("same start", dict(means_init=means0, weights_init=weights0, precisions_init=np.linalg.inv(covs0))),
        ("own k-means init", dict(init_params="kmeans")),
    )
    for label, kwargs in runs if own_init else runs[:1]:
        model = SkGaussianMixture(case.k, covariance_type="full", tol=tol, reg_covar=reg, max_iter=case.max_iter,
                                  random_state=seed, **kwargs)
        tick = time.perf_counter()
        model.fit(x)
        seconds = time.perf_counter() - tick
        emit(Row(f"sklearn GaussianMixture full ({label})", seconds, model.n_iter_, float(model.score(x)),
                 adjusted_rand_score(truth, model.predict(x))))


@dataclass
class DefaultsRow:
    """One seed of ``--defaults``: seconds, mean log-likelihood and ARI against the true components of ours and of
    the peer, for one model family."""

    peer_seconds: float
    ours_seconds: float
    peer_log_lik: float
    ours_log_lik: float
    peer_ari: float
    ours_ari: float


def compare_defaults(seeds: list[int], threads: int) -> None:
    """Print the ``--defaults`` table: per seed, studenttmixture vs our t-mixture and scikit-learn vs our Gaussian
    limit, each as users construct them; then the medians and the targets."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture
    from studenttmixture import EMStudentMixture

    x64, truth = make_data(CASES["1"])
    x32, x64_t = torch.tensor(x64, dtype=torch.float32), torch.tensor(x64)
    families = {
        "t (nu=4) vs studenttmixture": (
            lambda s: EMStudentMixture(n_components=10, df=4.0, fixed_df=True, tol=1e-3, random_state=s,
                                       init_type="kmeans"),
            lambda s: StudentTMixture(n_components=10, dof=4.0, random_state=s)),
        "Gaussian vs scikit-learn": (
            lambda s: SkGaussianMixture(n_components=10, covariance_type="full", random_state=s),
            lambda s: GaussianMixture(n_components=10, random_state=s)),
    }
    rows: dict[str, list[DefaultsRow]] = {name: [] for name in families}
    print(f"{CASES['1'].name}; ours on float32 rows, peers on float64; log-likelihoods scored on the float64 rows\n")
    print("| seed | family | peer s | ours s | speed-up | peer mean log-lik | ours mean log-lik | ours - peer | "
          "peer ARI | ours ARI |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (_, ours) in families.items():
            ours(0).fit(x32[:256])  # warm-up (kernels, allocator) outside the timing
        for seed in seeds:
            for name, (peer, ours) in families.items():
                peer_model, ours_model = peer(seed), ours(seed)
                _, peer_seconds = _timed(lambda: peer_model.fit(x64), "cpu")  # studenttmixture's fit returns None
                _, ours_seconds = _timed(lambda: ours_model.fit(x32), "cpu")
                row = DefaultsRow(peer_seconds, ours_seconds, float(peer_model.score(x64)), ours_model.score(x64_t),
                                  adjusted_rand_score(truth, peer_model.predict(x64)),
                                  adjusted_rand_score(truth, ours_model.predict(x32).numpy()))
                rows[name].append(row)
                print(f"| {seed} | {name} | {row.peer_seconds:.2f} | {row.ours_seconds:.2f} | "
                      f"{row.peer_seconds / row.ours_seconds:.1f}x | {row.peer_log_lik:.4f} | {row.ours_log_lik:.4f} | "
                      f"{row.ours_log_lik - row.peer_log_lik:+.4f} | {row.peer_ari:.3f} | {row.ours_ari:.3f} |",
                      flush=True)
    print()
    for name, family_rows in rows.items():
        peer_median = float(np.median([r.peer_seconds for r in family_rows]))
        ours_median = float(np.median([r.ours_seconds for r in family_rows]))
        worst = min(r.ours_log_lik - r.peer_log_lik for r in family_rows)
        speed = peer_median / ours_median
        print(f"{name}: median seconds peer {peer_median:.2f}, ours {ours_median:.2f}: {speed:.1f}x "
              f"(target >= {SPEED_TARGET:g}x) {'PASS' if speed >= SPEED_TARGET else 'FAIL'}; worst ours - peer mean "
              f"log-likelihood {worst:+.4f} (target >= {-LOG_LIK_TOLERANCE:g}) "
              f"{'PASS' if worst >= -LOG_LIK_TOLERANCE else 'FAIL'}")


def gaussian_survey(seed: int = 0) -> None:
    """Print, per ``SURVEY`` case and covariance type, the mean log-likelihood of our GaussianMixture without and
    with its split-and-merge move and of scikit-learn's default, all from ``random_state=seed``."""
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    print("| data | covariance | ours, EM alone | ours, default (one move) | scikit-learn | ours - scikit-learn |")
    print("| --- | --- | ---: | ---: | ---: | ---: |", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in SURVEY:
            x, _ = make_data(case, seed=seed)
            for kind in ("full", "diag"):
                common = dict(n_components=case.k, covariance_type=kind, random_state=seed)
                plain = GaussianMixture(**common, split_merge_moves=0).fit(x).score(x)
                moved = GaussianMixture(**common).fit(x).score(x)
                peer = float(SkGaussianMixture(**common).fit(x).score(x))
                print(f"| {case.name} | {kind} | {plain:.4f} | {moved:.4f} | {peer:.4f} | {moved - peer:+.4f} |",
                      flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["1"], choices=sorted(CASES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (peers run on the CPU only)")
    parser.add_argument("--threads", type=int, default=None, help="torch/BLAS threads (default: torch's)")
    parser.add_argument("--tol", type=float, default=1e-3, help="convergence tolerance of every method")
    parser.add_argument("--estimate-dof", action="store_true", help="estimate nu (ours and studenttmixture)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"],
                        help="torch.set_float32_matmul_precision ('high' = TF32 on CUDA)")
    parser.add_argument("--n", type=int, default=None, help="override N (quick checks; not the specified case)")
    parser.add_argument("--max-iter", type=int, default=None, help="override the iteration cap of every method")
    parser.add_argument("--own-init", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the peers from their own initialisation (case 2: studenttmixture's takes "
                             "hours on 2 cores)")
    parser.add_argument("--defaults", action="store_true",
                        help="compare every estimator as users construct it over --seeds (case 1) instead of --cases")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(8)), help="seeds of --defaults")
    parser.add_argument("--gaussian-survey", action="store_true",
                        help="our Gaussian limit, with and without its move, against scikit-learn on SURVEY's data")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    print(f"command: python {shlex.join(['benchmarks/bench_mixture.py', *(argv or sys.argv[1:])])}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32 matmul {args.matmul_precision}, "
          f"device {args.device}"
          + (f" ({torch.cuda.get_device_name(args.device)})" if args.device.startswith("cuda") else ""))
    if args.defaults:
        compare_defaults(args.seeds, torch.get_num_threads())
        return
    if args.gaussian_survey:
        gaussian_survey(args.seed)
        return
    for key in args.cases:
        case = dataclasses.replace(CASES[key], n=args.n or CASES[key].n, max_iter=args.max_iter or CASES[key].max_iter)
        print(f"\n### Case {key}: {case.name}" + (f" (overridden: N={case.n}, max_iter={case.max_iter})"
                                                   if args.n or args.max_iter else "") + "\n")
        if key == "3" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
            print("skipped: no CUDA")
            continue
        print("| method | seconds | iterations | mean log-lik | ARI |")
        print("| --- | ---: | ---: | ---: | ---: |", flush=True)
        run_case(case, args.device, args.tol, args.seed, args.estimate_dof, args.own_init, _print_row)


def _print_row(r: Row) -> None:
    print(f"| {r.method} | {r.seconds:.2f} | {r.iterations} | {r.log_lik:.4f} | {r.ari:.3f} |", flush=True)


if __name__ == "__main__":
    main()
