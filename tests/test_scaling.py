"""vljax.scaling: power-law fits, bootstrap CIs, exponent comparison, plots, OpenCLIP reference fit."""
import functools
from pathlib import Path

import numpy as np
import pytest

from vljax import scaling
from vljax.scaling import (bootstrap_fit, compare_exponents, fit_frontier, fit_openclip_imagenet,
                           fit_power_law, fit_saturating, frontier_points, load_zeroshot_points,
                           plot_fits)

OPENCLIP_DIR = Path(__file__).parents[2] / "shared" / "data" / "openclip_scaling"

# NOTE: all fits run in float64 numpy; deterministic reductions agree with the reference to ~1e-12.
F64_RTOL = 1e-10


def power_law_data(seed, n=25, a=-0.15, b=8.0, e=0.0, sigma=0.02, lo=1e9, hi=1e13):
    """Synthetic E = e + b * C^a with multiplicative log10-normal noise of std sigma (decades)."""
    rng = np.random.default_rng(seed)
    c = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), size=n)
    err = (e + b * c**a) * 10.0 ** (sigma * rng.standard_normal(n))
    return c, err


def test_ols_matches_float64_lstsq_reference():
    c, e = power_law_data(seed=1)
    fit = fit_power_law(c, e)
    design = np.stack([np.log10(c), np.ones_like(c)], axis=1)
    (slope, icpt), *_ = np.linalg.lstsq(design, np.log10(e), rcond=None)
    np.testing.assert_allclose([fit.a, fit.b], [slope, 10.0**icpt], rtol=F64_RTOL)
    assert fit.e == 0.0 and fit.n_points == 25 and fit.method == "ols"
    resid = np.log10(e) - (icpt + slope * np.log10(c))
    np.testing.assert_allclose(fit.rmse_log10, np.sqrt(np.mean(resid**2)), rtol=F64_RTOL)
    np.testing.assert_allclose(fit.predict(c), 10.0 ** (icpt + slope * np.log10(c)), rtol=1e-9)


@pytest.mark.parametrize("method", scaling.POWER_LAW_METHODS)
def test_power_law_recovers_truth(method):
    c, e = power_law_data(seed=2, n=40)
    fit = fit_power_law(c, e, method=method)
    assert abs(fit.a - (-0.15)) < 0.01
    assert abs(np.log10(fit.b) - np.log10(8.0)) < 0.1
    assert fit.r2_log10 > 0.9


def test_robust_fits_resist_outliers_that_bias_ols():
    c, e = power_law_data(seed=3, n=30, sigma=0.01)
    # NOTE: gross failures (diverged runs) at the largest computes drag the OLS slope up.
    top = np.argsort(c)[-3:]
    e = e.copy()
    e[top] *= 3.0
    ols = fit_power_law(c, e, method="ols")
    assert abs(ols.a - (-0.15)) > 0.03
    for method in ("huber", "theil_sen"):
        fit = fit_power_law(c, e, method=method)
        assert abs(fit.a - (-0.15)) < 0.01, (method, fit.a)


def test_saturating_recovers_truth():
    c, e = power_law_data(seed=4, n=40, a=-0.3, b=5.0, e=0.2, sigma=0.004, lo=1.0, hi=1e6)
    fit = fit_saturating(c, e)
    assert fit.method == "saturating"
    assert abs(fit.a - (-0.3)) < 0.03, fit
    assert abs(fit.e - 0.2) < 0.02, fit
    assert abs(np.log10(fit.b) - np.log10(5.0)) < 0.05, fit
    # NOTE: a pure power law cannot bend to the floor, so its log residuals are much larger.
    assert fit.rmse_log10 < 0.5 * fit_power_law(c, e).rmse_log10


def naive_frontier(c, e, n_bins, pad):
    """Reference binned minimum exactly as the README describes it, with numpy.histogram."""
    x, y = np.log10(c), np.log10(e)
    _, edges = np.histogram(x, bins=n_bins, range=(x.min(), x.max() + pad))
    xs, ys = [], []
    for k in range(n_bins):
        last = k == n_bins - 1
        in_bin = (x >= edges[k]) & ((x <= edges[k + 1]) if last else (x < edges[k + 1]))
        if in_bin.any():
            xs.append((edges[k] + edges[k + 1]) / 2)
            ys.append(y[in_bin].min())
    return 10.0 ** np.array(xs), 10.0 ** np.array(ys)


@pytest.mark.parametrize("n_bins,pad", [(5, 0.1), (7, 0.0), (3, 0.5)])
def test_frontier_points_match_naive_histogram(n_bins, pad):
    c, e = power_law_data(seed=5, n=60, sigma=0.1)
    got = frontier_points(c, e, n_bins=n_bins, pad=pad)
    want = naive_frontier(c, e, n_bins, pad)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=F64_RTOL)
    fit = fit_frontier(c, e, n_bins=n_bins, pad=pad)
    ref = fit_power_law(*want)
    np.testing.assert_allclose([fit.a, fit.b], [ref.a, ref.b], rtol=F64_RTOL)
    assert fit.method == "frontier_ols" and fit.n_points == len(want[0])


def test_frontier_drops_empty_bins_and_ignores_dominated_points():
    c = np.array([1e9, 1.1e9, 1e13, 1.2e13])
    e = np.array([0.5, 0.9, 0.2, 0.8])
    fc, fe = frontier_points(c, e, n_bins=5, pad=0.1)
    assert fc.shape == (2,)
    np.testing.assert_allclose(fe, [0.5, 0.2])


def test_bootstrap_is_seeded_and_ci_covers_truth_at_nominal_rate():
    c, e = power_law_data(seed=6)
    r1 = bootstrap_fit(c, e, n_boot=50, level=0.9, seed=7)
    r2 = bootstrap_fit(c, e, n_boot=50, level=0.9, seed=7)
    r3 = bootstrap_fit(c, e, n_boot=50, level=0.9, seed=8)
    np.testing.assert_array_equal(r1.a, r2.a)
    assert not np.array_equal(r1.a, r3.a)
    assert r1.a.shape == (50,) and r1.fit == fit_power_law(c, e)

    covered_a = covered_b = 0
    runs = 100
    for seed in range(runs):
        c, e = power_law_data(seed=100 + seed)
        r = bootstrap_fit(c, e, n_boot=500, level=0.9, seed=seed)
        lo, hi = r.interval("a")
        covered_a += lo <= -0.15 <= hi
        lo, hi = r.interval("b")
        covered_b += lo <= 8.0 <= hi
    # NOTE: nominal 90%; the percentile bootstrap of 25 points under-covers a little (0.885
    # measured over 400 other seeds), so 100 runs land in [80, 98] but for a ~3-sigma fluke.
    # Too narrow a CI (wrong resampling) falls far below, too wide a one above.
    for covered in (covered_a, covered_b):
        assert 0.8 * runs <= covered <= 0.98 * runs, (covered_a, covered_b)


def test_bootstrap_band_brackets_fit_and_widens_when_extrapolating():
    c, e = power_law_data(seed=9)
    r = bootstrap_fit(c, e, n_boot=300, level=0.9, seed=0)
    grid = np.geomspace(1e9, 1e16, 8)
    lo, hi = r.band(grid)
    pred = r.fit.predict(grid)
    assert np.all(lo < pred) and np.all(pred < hi)
    width = np.log10(hi / lo)
    assert width[-1] > 2.0 * width[3]  # 1e16 lies three decades past the data


def test_bootstrap_of_frontier_and_saturating_fits():
    c, e = power_law_data(seed=10, n=40, sigma=0.05)
    r = bootstrap_fit(c, e, functools.partial(fit_frontier, n_bins=5), n_boot=100, level=0.9)
    lo, hi = r.interval("a")
    assert lo < r.fit.a < hi
    c, e = power_law_data(seed=11, n=30, a=-0.3, b=5.0, e=0.2, sigma=0.005, lo=1.0, hi=1e6)
    r = bootstrap_fit(c, e, fit_saturating, n_boot=40, level=0.9)
    lo, hi = r.interval("e")
    assert lo <= 0.2 <= hi and hi - lo < 0.1


def test_compare_exponents_detects_real_difference():
    data_a = power_law_data(seed=12, a=-0.20, sigma=0.03)
    data_b = power_law_data(seed=13, a=-0.12, sigma=0.03)
    cmp = compare_exponents(data_a, data_b, n_boot=300, level=0.95, seed=0)
    assert cmp.significant and cmp.ci[1] < 0 and cmp.p_value < 0.05
    assert abs(cmp.diff - (-0.08)) < 0.02


def test_compare_exponents_null_rejects_at_about_nominal_rate():
    runs, rejections = 60, 0
    for seed in range(runs):
        cmp = compare_exponents(power_law_data(seed=200 + seed), power_law_data(seed=300 + seed),
                                n_boot=150, level=0.9, seed=seed)
        rejections += cmp.significant
    # NOTE: nominal 10% false positives at a 90% level; 11.7% measured over 300 other seeds
    # (bootstrap under-coverage). 25% of 60 runs is a ~3-sigma bound; an always-significant
    # test fails it.
    assert rejections <= 0.25 * runs, rejections


def test_paired_comparison_uses_shared_noise():
    # NOTE: both laws see the same per-configuration noise (same runs, two metrics), so pairing
    # cancels it and resolves a difference the independent bootstrap cannot.
    rng = np.random.default_rng(14)
    c = 10.0 ** rng.uniform(9, 13, size=20)
    shared = 10.0 ** (0.08 * rng.standard_normal(20))
    data_a = (c, 8.0 * c**-0.15 * shared)
    data_b = (c, 8.0 * c**-0.14 * shared * 10.0 ** (0.002 * rng.standard_normal(20)))
    paired = compare_exponents(data_a, data_b, paired=True, n_boot=300, seed=0)
    indep = compare_exponents(data_a, data_b, paired=False, n_boot=300, seed=0)
    assert paired.significant and not indep.significant
    assert paired.ci[1] - paired.ci[0] < 0.2 * (indep.ci[1] - indep.ci[0])


def test_bad_inputs_raise_named_errors():
    c, e = power_law_data(seed=15)
    with pytest.raises(ValueError, match="error"):
        fit_power_law(c, -e)
    with pytest.raises(ValueError, match="same length"):
        fit_power_law(c, e[:-1])
    with pytest.raises(ValueError, match="method"):
        fit_power_law(c, e, method="lasso")
    with pytest.raises(ValueError, match="distinct"):
        fit_power_law(np.full(4, 1e9), e[:4])
    with pytest.raises(ValueError, match="level"):
        bootstrap_fit(c, e, level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_fit(c, e, n_boot=1)
    with pytest.raises(ValueError, match="paired"):
        compare_exponents((c, e), (c[:-1], e[:-1]), paired=True)
    with pytest.raises(ValueError, match="n_bins"):
        frontier_points(c, e, n_bins=0)


def test_plot_fits_writes_png(tmp_path):
    import matplotlib.image

    c, e = power_law_data(seed=16, sigma=0.05)
    r = bootstrap_fit(c, e, n_boot=50, level=0.9)
    sat = fit_saturating(c, e)
    out = plot_fits(tmp_path / "sub" / "fits.png",
                    [scaling.FitSeries("power law", c, e, r.fit, r),
                     scaling.FitSeries("saturating", c, e, sat, highlight=frontier_points(c, e))],
                    title="synthetic", extend=3.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # not a blank canvas
    with pytest.raises(ValueError, match="series"):
        plot_fits(tmp_path / "x.png", [])


needs_openclip = pytest.mark.skipif(
    not (OPENCLIP_DIR / "zeroshot_results.csv").is_file(),
    reason=f"OpenCLIP measurements not found at {OPENCLIP_DIR} (the repo's sibling ../shared)")


@needs_openclip
def test_openclip_rows_load():
    laion = load_zeroshot_points(OPENCLIP_DIR, scaling.openclip.LAION_UPSTREAMS)
    wit = load_zeroshot_points(OPENCLIP_DIR, "CLIP-WIT")
    assert laion[0].shape == (29,) and wit[0].shape == (3,)
    assert np.all((laion[1] > 0.2) & (laion[1] < 0.5))
    with pytest.raises(ValueError, match="downstream"):
        load_zeroshot_points(OPENCLIP_DIR, "CLIP-WIT", downstream="imagenet-22k")
    with pytest.raises(ValueError, match="upstreams"):
        load_zeroshot_points(OPENCLIP_DIR, "LAION-5B")


@needs_openclip
def test_openclip_imagenet_recovers_published_coefficients():
    fits = fit_openclip_imagenet(OPENCLIP_DIR)
    laion, wit = fits["openclip_laion"], fits["openai_wit"]
    # NOTE: the README states the exponents (-0.11 LAION, -0.16 WIT); the prefactors are what its
    # procedure yields on these CSVs, pinned to 2 decimals like the exponents.
    assert round(laion.a, 2) == -0.11 and round(laion.b, 2) == 5.86
    assert round(wit.a, 2) == -0.16 and round(wit.b, 2) == 23.18
    assert laion.n_points == 5 and wit.n_points == 3
    # NOTE: the paper's finding: OpenAI CLIP's ImageNet error falls faster with compute.
    assert wit.a < laion.a
