"""Feature statistics and the distances and scores built on them: Frechet distance, KID, IS."""

import numpy as np


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased (1/N) covariance in float64, as StyleGAN-V's FeatureStats."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {features.shape}")
    if not np.isfinite(features).all():
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ValueError(f"features of items {bad[:5].tolist()} are not finite")
    mu = features.mean(axis=0)
    centred = features - mu
    sigma = centred.T @ centred / features.shape[0]
    return mu, sigma


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; negative rounding noise clipped."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), in float64.

    The product is made symmetric before its root, so only eigh is needed: the result is real,
    and it is clipped at 0 against rounding (identical sets give 0, never a small negative).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    dim = mu1.shape[0]
    if mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(f"shapes do not match: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    sqrt1 = _psd_sqrt(sigma1)
    product = sqrt1 @ sigma2 @ sqrt1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return max(float(distance), 0.0)


def kernel_inception_distance(real_features, fake_features, num_subsets=100, max_subset_size=1000, seed=0):
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over random
    subsets (StyleGAN2-ADA's kid50k_full settings). Returns (mean, std over subsets)."""
    real = np.asarray(real_features, np.float64)
    fake = np.asarray(fake_features, np.float64)
    size = min(len(real), len(fake), max_subset_size)
    if size < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated items, got {len(real)} and {len(fake)}")
    dim = real.shape[1]
    rng = np.random.RandomState(seed)
    estimates = []
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        k_xx = (x @ x.T / dim + 1) ** 3
        k_yy = (y @ y.T / dim + 1) ** 3
        k_xy = (x @ y.T / dim + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        estimates.append(within - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def inception_score(probabilities, num_splits=10, shuffle_seed=42):
    """exp(E_x KL(p(y|x) || p(y))) per split, StyleGAN-V's video IS protocol: the rows are
    shuffled with RandomState(42) first, then cut into `num_splits` equal parts. Returns
    (mean, std) over splits."""
    probs = np.array(probabilities, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < num_splits:
        raise ValueError(f"need (N >= {num_splits}, classes) probabilities, got shape {probs.shape}")
    np.random.RandomState(shuffle_seed).shuffle(probs)
    scores = []
    for i in range(num_splits):
        part = probs[i * len(probs) // num_splits:(i + 1) * len(probs) // num_splits]
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.nan_to_num(part * (np.log(part) - np.log(marginal)), nan=0.0)  # 0 log 0 = 0
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
