//! The statistics of `soak compare`, written out (no statistics crate: statrs' Mann-Whitney
//! p-values are known to be wrong, and these are short).
//!
//! * [`rank_sum`]: the Wilcoxon–Mann–Whitney rank-sum test with the normal approximation, the
//!   tie correction of the variance and the continuity correction — the same numbers as R's
//!   `wilcox.test(candidate, base, exact = FALSE, correct = TRUE)` and SciPy's
//!   `mannwhitneyu(candidate, base, method="asymptotic", use_continuity=True)`.
//! * [`hodges_lehmann`]: the Hodges–Lehmann shift (median of every `candidate − base`
//!   difference) with the confidence interval that inverts the same test. R finds that
//!   interval with `uniroot` (tolerance 1e-4); the statistic it inverts is a step function that
//!   only jumps at the pairwise differences, so the interval's ends *are* order statistics of
//!   the differences and are computed here exactly: the `k`-th smallest difference with
//!   `k = ⌈nm/2 − ½ − z·σ⌉`, σ the standard deviation of U with the ties inside each sample.
//!   Where R clamps an unreachable interval to the range of the differences (which with one
//!   observation per side "proves" any shift), this returns no interval.
//! * [`normal_cdf`] (Cody's rational approximations, as in R's `pnorm`, full double precision)
//!   and [`normal_quantile`] (Newton on `normal_cdf`).
//!
//! Pairwise differences are never materialised for large samples: the `k`-th smallest of the
//! `n·m` differences is selected in `O((n + m) log nm)` expected time on the implicit sorted
//! matrix, so a 24-hour proof with millions of Phase A latencies still compares in seconds.

/// `(P(Z ≤ x), P(Z > x))` for a standard normal `Z`, each to full double precision (also far
/// in the tails, where `1 − P(Z ≤ x)` would cancel). W. J. Cody, "Rational Chebyshev
/// approximations for the error function", Math. Comp. 23 (1969), with the coefficients of
/// Cody's ANORM (also used by R's `pnorm`).
// The coefficients are kept with every published digit.
#[allow(clippy::excessive_precision)]
pub fn normal_cdf(x: f64) -> (f64, f64) {
    const A: [f64; 5] = [
        2.235_252_035_460_683_928_7,
        161.028_231_068_555_878_81,
        1_067.689_485_460_370_958_2,
        18_154.981_253_343_561_249,
        0.065_682_337_918_207_449_113,
    ];
    const B: [f64; 4] = [
        47.202_581_904_688_241_87,
        976.098_551_737_776_693_22,
        10_260.932_208_618_978_205,
        45_507.789_335_026_729_956,
    ];
    const C: [f64; 9] = [
        0.398_941_512_088_134_667_64,
        8.883_149_794_388_375_941_2,
        93.506_656_132_177_855_979,
        597.270_276_394_800_262_26,
        2_494.537_585_290_372_671_1,
        6_848.190_450_536_282_332_6,
        11_602.651_437_647_350_124,
        9_842.714_838_383_978_021_8,
        1.076_557_677_372_019_231_7e-8,
    ];
    const D: [f64; 8] = [
        22.266_688_044_328_115_691,
        235.387_901_782_624_998_61,
        1_519.377_599_407_554_805,
        6_485.558_298_266_760_755,
        18_615.571_640_885_098_091,
        34_900.952_721_145_977_266,
        38_912.003_286_093_271_411,
        19_685.429_676_859_990_727,
    ];
    const P: [f64; 6] = [
        0.215_898_534_057_956_99,
        0.127_401_161_160_247_363_9,
        0.022_235_277_870_649_807,
        0.001_421_619_193_227_893_466,
        2.911_287_495_116_879_2e-5,
        0.023_073_441_764_940_173_03,
    ];
    const Q: [f64; 5] = [
        1.284_260_096_144_911_21,
        0.468_238_212_480_865_118,
        0.065_988_137_868_928_551_5,
        0.003_782_396_332_027_582_44,
        7.297_515_550_839_662_05e-5,
    ];
    const SQRT_32: f64 = 5.656_854_249_492_380_195_206_754_896_838;
    const ONE_OVER_SQRT_2PI: f64 = 0.398_942_280_401_432_677_939_946_059_934;

    if x.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    let y = x.abs();
    // exp(-y²/2) split as exp(-s²/2)·exp(-(y−s)(y+s)/2) with s = y rounded down to 1/16, so the
    // square is exact (Cody's trick against cancellation in the tails).
    let gauss_tail = |y: f64, factor: f64| {
        let s = (y * 16.0).trunc() / 16.0;
        let del = (y - s) * (y + s);
        (-s * s * 0.5).exp() * (-del * 0.5).exp() * factor
    };
    if y <= 0.674_489_75 {
        let mut num = 0.0;
        let mut den = 0.0;
        if y > f64::EPSILON * 0.5 {
            let xsq = x * x;
            num = A[4] * xsq;
            den = xsq;
            for i in 0..3 {
                num = (num + A[i]) * xsq;
                den = (den + B[i]) * xsq;
            }
        }
        let t = x * (num + A[3]) / (den + B[3]);
        return (0.5 + t, 0.5 - t);
    }
    let small_tail = if y <= SQRT_32 {
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        gauss_tail(y, (num + C[7]) / (den + D[7]))
    } else {
        let xsq = 1.0 / (x * x);
        let mut num = P[5] * xsq;
        let mut den = xsq;
        for i in 0..4 {
            num = (num + P[i]) * xsq;
            den = (den + Q[i]) * xsq;
        }
        let t = xsq * (num + P[4]) / (den + Q[4]);
        gauss_tail(y, (ONE_OVER_SQRT_2PI - t) / y)
    };
    if x > 0.0 {
        (1.0 - small_tail, small_tail)
    } else {
        (small_tail, 1.0 - small_tail)
    }
}

/// The `p`-quantile of the standard normal distribution, `p` in (0, 1): Newton's method on
/// [`normal_cdf`] (working on the smaller tail), accurate to a few ulps. `NaN` outside (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    // Solve for the upper tail q = min(p, 1 − p) at z > 0, then restore the sign.
    let (q, sign) = if p < 0.5 { (p, -1.0) } else { (1.0 - p, 1.0) };
    // Start: the tail bound inverted, good to a few percent.
    let t = (-2.0 * q.ln()).sqrt();
    let mut z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    for _ in 0..60 {
        let tail = normal_cdf(z).1;
        let density = (-0.5 * z * z).exp()
            * std::f64::consts::FRAC_2_SQRT_PI
            * std::f64::consts::FRAC_1_SQRT_2
            / 2.0;
        if density == 0.0 {
            break;
        }
        // Newton on ln(tail(z)) − ln(q): well conditioned far in the tail too.
        let step = (tail.ln() - q.ln()) * tail / density;
        z += step;
        if step.abs() <= 1e-15 * z.abs().max(1.0) {
            break;
        }
    }
    sign * z
}

/// The rank-sum test of `candidate` against `base`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSum {
    /// Base observations.
    pub n_base: usize,
    /// Candidate observations.
    pub n_candidate: usize,
    /// Mann-Whitney `U` of the candidate: pairs with candidate > base, ties counting ½ (R's
    /// `W` for `wilcox.test(candidate, base)`, SciPy's `U1` for `mannwhitneyu(candidate, base)`).
    pub u: f64,
    /// Standard deviation of `U` under no shift, tie corrected.
    pub sigma: f64,
    /// Standardised statistic with the continuity correction (positive: candidate higher).
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

impl RankSum {
    /// Vargha–Delaney A: the probability that a candidate value exceeds a base value (ties ½),
    /// `U / (n·m)`; 0.5 means no effect. Kayenta's "CLES" effect size.
    pub fn common_language_effect(&self) -> f64 {
        self.u / (self.n_base as f64 * self.n_candidate as f64)
    }
}

/// `Σ (t³ − t)` over the tie groups of sorted values.
fn tie_term(sorted: &[f64]) -> f64 {
    let mut total = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        total += t * t * t - t;
        i = j;
    }
    total
}

/// σ of U for sample sizes `n`, `m` with tie term `ties` (over the pooled sample).
fn u_sigma(n: usize, m: usize, ties: f64) -> f64 {
    let (n, m) = (n as f64, m as f64);
    let total = n + m;
    let variance = n * m / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    variance.max(0.0).sqrt()
}

fn sorted_finite(values: &[f64]) -> Option<Vec<f64>> {
    if values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(sorted)
}

/// The two-sided rank-sum test of `candidate` against `base` (normal approximation, tie and
/// continuity corrected). `None` when a sample is empty, holds a non-finite value, or every
/// value is tied (σ = 0: the test is undefined).
pub fn rank_sum(base: &[f64], candidate: &[f64]) -> Option<RankSum> {
    if base.is_empty() || candidate.is_empty() {
        return None;
    }
    let base = sorted_finite(base)?;
    let candidate = sorted_finite(candidate)?;
    let (n, m) = (base.len(), candidate.len());
    // Merge the two sorted samples; average ranks over tie groups.
    let mut pooled: Vec<(f64, bool)> = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if j == m || (i < n && base[i] <= candidate[j]) {
            pooled.push((base[i], false));
            i += 1;
        } else {
            pooled.push((candidate[j], true));
            j += 1;
        }
    }
    let mut rank_sum_candidate = 0.0;
    let mut ties = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start + 1;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        // Ranks start..end (0-based) → average 1-based rank.
        let average = (start + end + 1) as f64 / 2.0;
        let in_candidate = pooled[start..end].iter().filter(|p| p.1).count() as f64;
        rank_sum_candidate += average * in_candidate;
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    let mf = m as f64;
    let u = rank_sum_candidate - mf * (mf + 1.0) / 2.0;
    let sigma = u_sigma(n, m, ties);
    if sigma == 0.0 {
        return None;
    }
    let centred = u - n as f64 * mf / 2.0;
    let correction = 0.5
        * if centred > 0.0 {
            1.0
        } else if centred < 0.0 {
            -1.0
        } else {
            0.0
        };
    let z = (centred - correction) / sigma;
    let p_value = (2.0 * normal_cdf(-z.abs()).0).min(1.0);
    Some(RankSum {
        n_base: n,
        n_candidate: m,
        u,
        sigma,
        z,
        p_value,
    })
}

/// The Hodges–Lehmann shift of `candidate` over `base` with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Median of every `candidate − base` difference.
    pub estimate: f64,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
    /// The interval `(lower, upper)`; `None` when the samples are too small for any interval
    /// at this level (e.g. one observation per side at 95 %).
    pub interval: Option<(f64, f64)>,
}

/// The Hodges–Lehmann shift `candidate − base` and the confidence interval of the inverted
/// rank-sum test (see the module docs). `None` when a sample is empty or holds a non-finite
/// value, or `confidence` is not in (0, 1).
pub fn hodges_lehmann(base: &[f64], candidate: &[f64], confidence: f64) -> Option<Shift> {
    if base.is_empty() || candidate.is_empty() || !(confidence > 0.0 && confidence < 1.0) {
        return None;
    }
    let base = sorted_finite(base)?;
    let candidate = sorted_finite(candidate)?;
    let differences = Differences::new(&base, &candidate);
    let total = differences.len();
    let estimate = if total % 2 == 1 {
        differences.kth(total.div_ceil(2))
    } else {
        (differences.kth(total / 2) + differences.kth(total / 2 + 1)) / 2.0
    };
    // Between pairwise differences only ties inside each sample remain.
    let sigma = u_sigma(
        base.len(),
        candidate.len(),
        tie_term(&base) + tie_term(&candidate),
    );
    let zq = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let k = (total as f64 / 2.0 - 0.5 - zq * sigma).ceil();
    let interval = (k >= 1.0).then(|| {
        // k ≤ total/2 here, so the index fits and lower ≤ upper.
        let k = k as u64;
        (differences.kth(k), differences.kth(total + 1 - k))
    });
    Some(Shift {
        estimate,
        confidence,
        interval,
    })
}

/// Median of sorted values (`NaN` when empty).
pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The implicit matrix of differences `candidate[j] − base_desc[i]`: rows (candidate, sorted
/// ascending) and columns (base, sorted descending) both non-decreasing. Every difference is
/// computed by [`Differences::at`] only, so comparisons are consistent under rounding.
struct Differences<'a> {
    base_desc: Vec<f64>,
    candidate: &'a [f64],
}

/// Below this many active elements, selection sorts them directly.
const DIRECT_SELECT: u64 = 4096;

impl<'a> Differences<'a> {
    fn new(base_sorted: &[f64], candidate_sorted: &'a [f64]) -> Self {
        Differences {
            base_desc: base_sorted.iter().rev().copied().collect(),
            candidate: candidate_sorted,
        }
    }

    fn len(&self) -> u64 {
        self.base_desc.len() as u64 * self.candidate.len() as u64
    }

    fn at(&self, row: usize, col: usize) -> f64 {
        self.candidate[row] - self.base_desc[col]
    }

    /// Per row, how many columns hold a difference `< v` (`strict`) or `≤ v`. Rows and columns
    /// are monotone, so one pointer walks the whole matrix: O(n + m).
    fn split(&self, v: f64, strict: bool, out: &mut [usize]) {
        let cols = self.base_desc.len();
        let mut col = 0;
        for row in (0..self.candidate.len()).rev() {
            while col < cols && {
                let d = self.at(row, col);
                if strict { d < v } else { d <= v }
            } {
                col += 1;
            }
            out[row] = col;
        }
    }

    /// The `k`-th smallest difference, 1-based (`1 ≤ k ≤ len`): randomised selection on the
    /// sorted matrix (pivot a pseudo-random active element; a fixed seed keeps it
    /// deterministic), shrinking each row's active column range `[lo, hi)` until few remain.
    fn kth(&self, k: u64) -> f64 {
        let rows = self.candidate.len();
        let mut lo = vec![0usize; rows];
        let mut hi = vec![self.base_desc.len(); rows];
        let mut below = vec![0usize; rows];
        let mut below_or_equal = vec![0usize; rows];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        loop {
            let active: u64 = lo.iter().zip(&hi).map(|(l, h)| (h - l) as u64).sum();
            let discarded_low: u64 = lo.iter().map(|&l| l as u64).sum();
            if active <= DIRECT_SELECT {
                let mut rest: Vec<f64> = (0..rows)
                    .flat_map(|r| (lo[r]..hi[r]).map(move |c| (r, c)))
                    .map(|(r, c)| self.at(r, c))
                    .collect();
                rest.sort_by(f64::total_cmp);
                // The answer is among the active elements (invariant), so the index is in range.
                let index = (k - discarded_low - 1) as usize;
                return rest[index.min(rest.len().saturating_sub(1))];
            }
            // A pseudo-random active element as the pivot (splitmix64).
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut mix = seed;
            mix = (mix ^ (mix >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            mix = (mix ^ (mix >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            mix ^= mix >> 31;
            let mut pick = mix % active;
            let mut pivot = f64::NAN;
            for r in 0..rows {
                let width = (hi[r] - lo[r]) as u64;
                if pick < width {
                    pivot = self.at(r, lo[r] + pick as usize);
                    break;
                }
                pick -= width;
            }
            self.split(pivot, true, &mut below);
            self.split(pivot, false, &mut below_or_equal);
            let less: u64 = below.iter().map(|&c| c as u64).sum();
            let less_or_equal: u64 = below_or_equal.iter().map(|&c| c as u64).sum();
            if k <= less {
                for r in 0..rows {
                    hi[r] = hi[r].min(below[r]);
                    lo[r] = lo[r].min(hi[r]);
                }
            } else if k <= less_or_equal {
                return pivot;
            } else {
                for r in 0..rows {
                    lo[r] = lo[r].max(below_or_equal[r]);
                    hi[r] = hi[r].max(lo[r]);
                }
            }
        }
    }
}

#[cfg(test)]
// Reference values are kept digit for digit as the reference tools printed them.
#[allow(clippy::excessive_precision)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Absolute agreement demanded of every reference value below.
    const TOL: f64 = 1e-6;

    fn close(got: f64, want: f64, what: &str) {
        assert!(
            (got - want).abs() <= TOL,
            "{what}: got {got:.12}, want {want:.12}"
        );
    }

    fn brute_kth(base: &[f64], candidate: &[f64], k: u64) -> f64 {
        let mut all: Vec<f64> = candidate
            .iter()
            .flat_map(|c| base.iter().map(move |b| c - b))
            .collect();
        all.sort_by(f64::total_cmp);
        all[(k - 1) as usize]
    }

    #[test]
    fn normal_cdf_matches_reference_values() {
        // Reference: R 4.2.2 (Debian r-base-core 4.2.2.20221110-2),
        // `sprintf("%.17g", pnorm(x))` and `sprintf("%.17g", pnorm(x, lower.tail = FALSE))`.
        for (x, lower, upper) in [
            (0.0, 0.5, 0.5),
            (0.5, 0.69146246127401301, 0.30853753872598694),
            (
                -1.959963984540054,
                0.025000000000000012,
                0.97499999999999998,
            ),
            (3.0, 0.9986501019683699, 0.0013498980316300946),
            (-8.0, 6.2209605742717849e-16, 0.99999999999999933),
            (-20.0, 2.7536241186062337e-89, 1.0),
        ] {
            let (l, u) = normal_cdf(x);
            // Relative agreement to 1e-14: the same algorithm, so only rounding differs.
            assert!(
                (l - lower).abs() <= 1e-14 * lower,
                "lower({x}) = {l:e}, want {lower:e}"
            );
            assert!(
                (u - upper).abs() <= 1e-14 * upper,
                "upper({x}) = {u:e}, want {upper:e}"
            );
        }
    }

    #[test]
    fn normal_quantile_matches_reference_values() {
        // Reference: R 4.2.2, `sprintf("%.17g", qnorm(p))`.
        for (p, z) in [
            (0.975, 1.9599639845400536),
            (0.995, 2.5758293035488999),
            (0.5, 0.0),
            (0.1, -1.2815515655446008),
            (1e-10, -6.3613409024040557),
        ] {
            let got = normal_quantile(p);
            assert!((got - z).abs() <= 1e-12, "qnorm({p}) = {got}, want {z}");
        }
        assert!(normal_quantile(0.0).is_nan() && normal_quantile(1.0).is_nan());
    }

    /// One reference data set: base, candidate, and what the reference tools computed.
    struct Reference {
        name: &'static str,
        base: Vec<f64>,
        candidate: Vec<f64>,
        /// R's `W` = SciPy's `U1` (identical in both tools for every set here).
        u: f64,
        /// R's `p.value`.
        p_r: f64,
        /// SciPy's `pvalue`.
        p_scipy: f64,
        /// NumPy `median(subtract.outer(candidate, base))`.
        hodges_lehmann: f64,
        /// The interval's ends as order statistics of the sorted differences (NumPy, with
        /// `k = ceil(nm/2 - 0.5 - norm.ppf(0.975) * sigma)`, sigma with within-sample ties).
        interval: (f64, f64),
        /// R's `conf.int` (found by `uniroot`, tolerance 1e-4).
        interval_r: (f64, f64),
    }

    /// Reference values and where they came from:
    ///
    /// * R 4.2.2 (Debian `r-base-core` 4.2.2.20221110-2):
    ///   `t <- wilcox.test(cand, base, exact = FALSE, correct = TRUE, conf.int = TRUE,
    ///   conf.level = 0.95)`, printed with `sprintf("%.17g", …)` for `t$statistic`,
    ///   `t$p.value`, `t$conf.int`.
    /// * SciPy 1.17.1: `scipy.stats.mannwhitneyu(cand, base, method="asymptotic",
    ///   use_continuity=True, alternative="two-sided")`.
    /// * NumPy 2.4.6: the Hodges–Lehmann estimate and the exact interval ends (see
    ///   [`Reference::interval`]).
    ///
    /// `hollander` is the example of R's `?wilcox.test` (Hollander & Wolfe 1973, p. 69). R's
    /// own `estimate` there (0.30250833904157232) is a `uniroot` point inside the flat stretch
    /// of the corrected statistic, not the median of the differences (0.305); the median is
    /// the Hodges–Lehmann estimator, so that is what is checked.
    fn references() -> Vec<Reference> {
        let formula = |count: u32, mult: u32, modulus: u32, div: f64, add: f64| -> Vec<f64> {
            (1..=count)
                .map(|i| f64::from((i * mult) % modulus) / div + add)
                .collect()
        };
        vec![
            Reference {
                name: "hollander",
                base: vec![1.15, 0.88, 0.90, 0.74, 1.21],
                candidate: vec![0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46],
                u: 35.0,
                p_r: 0.24462360512698336,
                p_scipy: 0.24462360512698333,
                hodges_lehmann: 0.30500000000000005,
                interval: (-0.15000000000000002, 0.7599999999999999),
                interval_r: (-0.15001483719908448, 0.75994276532229388),
            },
            Reference {
                name: "ties",
                base: vec![
                    812.0, 790.0, 805.0, 812.0, 799.0, 830.0, 812.0, 790.0, 845.0, 801.0, 799.0,
                    823.0,
                ],
                candidate: vec![
                    850.0, 812.0, 861.0, 840.0, 812.0, 870.0, 835.0, 849.0, 812.0, 866.0, 858.0,
                    844.0, 851.0,
                ],
                u: 139.5,
                p_r: 0.00083229165741760698,
                p_scipy: 0.00083229165741760579,
                hodges_lehmann: 37.0,
                interval: (16.0, 51.0),
                interval_r: (16.000071509104345, 50.999929229564998),
            },
            Reference {
                name: "counts",
                base: vec![0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0],
                candidate: vec![0.0, 1.0, 3.0, 2.0, 0.0, 4.0, 1.0, 2.0, 0.0, 5.0, 3.0],
                u: 85.5,
                p_r: 0.024576587947765075,
                p_scipy: 0.024576587947765072,
                hodges_lehmann: 1.0,
                interval: (0.0, 3.0),
                interval_r: (5.6934263067243506e-05, 2.9999883380636101),
            },
            Reference {
                // R: base = ((1:40 * 37) %% 23) / 4 + 10, cand = ((1:35 * 11) %% 19) / 4 + 8.
                name: "lower",
                base: formula(40, 37, 23, 4.0, 10.0),
                candidate: formula(35, 11, 19, 4.0, 8.0),
                u: 189.5,
                p_r: 5.9612717591649389e-08,
                p_scipy: 5.9612717591649322e-08,
                hodges_lehmann: -2.5,
                interval: (-3.25, -1.75),
                interval_r: (-3.2499684085581397, -1.7499278804296745),
            },
            Reference {
                // R: base = ((1:500 * 7919) %% 1000) / 10, cand = ((1:600 * 104729) %% 1000)
                // / 10 + 3 — 300,000 differences, so the selection path runs.
                name: "large",
                base: formula(500, 7919, 1000, 10.0, 0.0),
                candidate: (1..=600u64)
                    .map(|i| ((i * 104_729) % 1000) as f64 / 10.0 + 3.0)
                    .collect(),
                u: 158268.5,
                p_r: 0.11504177943962532,
                p_scipy: 0.11504177943962537,
                hodges_lehmann: 2.7999999999999972,
                interval: (-0.69999999999999973, 6.2999999999999972),
                interval_r: (-0.69994332844936891, 6.2999713065886738),
            },
        ]
    }

    #[test]
    fn rank_sum_matches_r_and_scipy() {
        for r in references() {
            let test = rank_sum(&r.base, &r.candidate).expect("defined");
            close(test.u, r.u, &format!("{} U", r.name));
            close(test.p_value, r.p_r, &format!("{} p (R)", r.name));
            close(test.p_value, r.p_scipy, &format!("{} p (SciPy)", r.name));
            // Tighter than the brief's 1e-6: relative agreement with R to 1e-9.
            assert!(
                (test.p_value - r.p_r).abs() <= 1e-9 * r.p_r,
                "{}: p {} vs R {}",
                r.name,
                test.p_value,
                r.p_r
            );
        }
    }

    #[test]
    fn hodges_lehmann_matches_numpy_and_r() {
        for r in references() {
            let shift = hodges_lehmann(&r.base, &r.candidate, 0.95).expect("defined");
            close(
                shift.estimate,
                r.hodges_lehmann,
                &format!("{} estimate", r.name),
            );
            let (lower, upper) = shift.interval.expect("an interval");
            close(lower, r.interval.0, &format!("{} lower", r.name));
            close(upper, r.interval.1, &format!("{} upper", r.name));
            // R's uniroot stops within its tolerance (1e-4) of the same ends.
            assert!(
                (lower - r.interval_r.0).abs() <= 1e-4,
                "{} lower vs R",
                r.name
            );
            assert!(
                (upper - r.interval_r.1).abs() <= 1e-4,
                "{} upper vs R",
                r.name
            );
        }
    }

    #[test]
    fn selection_on_a_small_matrix_matches_brute_force() {
        let base = [1.0, 2.0, 2.0, 7.0];
        let candidate = [0.5, 3.0, 3.0, 9.0, 10.0];
        let d = Differences::new(&base, &candidate);
        for k in 1..=d.len() {
            assert_eq!(d.kth(k), brute_kth(&base, &candidate, k), "k = {k}");
        }
    }

    #[test]
    fn selection_on_a_large_matrix_matches_brute_force() {
        // 300 × 250 = 75,000 differences: well above the direct-selection threshold, so the
        // pivoting path runs.
        let base: Vec<f64> = (0..300).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let candidate: Vec<f64> = (0..250).map(|i| ((i * 53) % 97) as f64 * 0.7).collect();
        let mut b = base.clone();
        b.sort_by(f64::total_cmp);
        let mut c = candidate.clone();
        c.sort_by(f64::total_cmp);
        let d = Differences::new(&b, &c);
        for k in [1, 2, 17, 4096, 30_000, 37_500, 37_501, 74_999, 75_000] {
            assert_eq!(d.kth(k), brute_kth(&b, &c, k), "k = {k}");
        }
    }

    proptest! {
        #[test]
        fn selection_matches_brute_force(
            base in proptest::collection::vec(-50i32..50, 1..40),
            candidate in proptest::collection::vec(-50i32..50, 1..40),
            pick in 0.0f64..1.0,
        ) {
            let mut b: Vec<f64> = base.iter().map(|&v| f64::from(v) / 4.0).collect();
            let mut c: Vec<f64> = candidate.iter().map(|&v| f64::from(v) / 4.0).collect();
            b.sort_by(f64::total_cmp);
            c.sort_by(f64::total_cmp);
            let d = Differences::new(&b, &c);
            let k = 1 + ((d.len() - 1) as f64 * pick) as u64;
            prop_assert_eq!(d.kth(k), brute_kth(&b, &c, k));
        }

        #[test]
        fn p_value_is_a_probability_and_symmetric(
            base in proptest::collection::vec(0u32..20, 1..30),
            candidate in proptest::collection::vec(0u32..20, 1..30),
        ) {
            let b: Vec<f64> = base.iter().map(|&v| f64::from(v)).collect();
            let c: Vec<f64> = candidate.iter().map(|&v| f64::from(v)).collect();
            if let (Some(forward), Some(backward)) = (rank_sum(&b, &c), rank_sum(&c, &b)) {
                prop_assert!((0.0..=1.0).contains(&forward.p_value));
                prop_assert!((forward.p_value - backward.p_value).abs() < 1e-12);
                prop_assert!((forward.z + backward.z).abs() < 1e-12);
                prop_assert!((forward.u + backward.u - (b.len() * c.len()) as f64).abs() < 1e-9);
            }
        }

        #[test]
        fn shift_interval_brackets_the_estimate(
            base in proptest::collection::vec(0u32..1000, 4..40),
            candidate in proptest::collection::vec(0u32..1000, 4..40),
        ) {
            let b: Vec<f64> = base.iter().map(|&v| f64::from(v)).collect();
            let c: Vec<f64> = candidate.iter().map(|&v| f64::from(v)).collect();
            let shift = hodges_lehmann(&b, &c, 0.95).expect("non-empty");
            if let Some((lower, upper)) = shift.interval {
                prop_assert!(lower <= shift.estimate && shift.estimate <= upper);
            }
            // Shifting the candidate by a constant shifts estimate and interval by it.
            let moved: Vec<f64> = c.iter().map(|v| v + 250.0).collect();
            let again = hodges_lehmann(&b, &moved, 0.95).expect("non-empty");
            prop_assert!((again.estimate - shift.estimate - 250.0).abs() < 1e-9);
        }
    }

    #[test]
    fn degenerate_inputs_are_none_not_nan() {
        assert!(rank_sum(&[], &[1.0]).is_none());
        assert!(rank_sum(&[1.0, 1.0], &[1.0]).is_none(), "all tied: σ = 0");
        assert!(rank_sum(&[1.0, f64::NAN], &[2.0]).is_none());
        assert!(hodges_lehmann(&[1.0], &[], 0.95).is_none());
        assert!(hodges_lehmann(&[1.0], &[2.0], 1.0).is_none());
        let one_each = hodges_lehmann(&[1.0], &[5.0], 0.95).expect("defined");
        assert_eq!(one_each.estimate, 4.0);
        assert_eq!(one_each.interval, None, "no 95 % interval from one pair");
    }
}
