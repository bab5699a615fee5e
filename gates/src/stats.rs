//! Count statistics for the adaptive policy: the Poisson upper tail.
//!
//! Written out rather than taken from a statistics crate: it is twenty lines, exact enough for
//! a threshold test, and keeps the evaluator free of dependencies whose p-values are known to be
//! wrong in places (statrs' exact Mann-Whitney).

/// `ln(k!)`: exact summation below 256, Stirling's series above (error < 1e-12).
fn ln_factorial(k: u64) -> f64 {
    if k < 256 {
        (2..=k).map(|i| (i as f64).ln()).sum()
    } else {
        let x = k as f64;
        x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
            - 1.0 / (360.0 * x * x * x)
    }
}

/// `P(X ≥ k)` for `X ~ Poisson(lambda)`: the probability of seeing at least `k` events when
/// `lambda` are expected. `1` for `k = 0`; `0` for `k > 0` with `lambda ≤ 0`. Never NaN.
pub fn poisson_upper_tail(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda.is_nan() || lambda <= 0.0 {
        return 0.0;
    }
    if lambda.is_infinite() {
        return 1.0;
    }
    // Bound on the number of terms summed; each sum converges geometrically long before it.
    const MAX_TERMS: u64 = 1_000_000;
    let ln_pmf = |i: u64| -lambda + i as f64 * lambda.ln() - ln_factorial(i);
    if k as f64 > lambda {
        // Right of the mode: terms shrink as i grows; sum upward from k.
        let mut term = ln_pmf(k).exp();
        let mut sum = 0.0;
        let mut i = k;
        for _ in 0..MAX_TERMS {
            sum += term;
            i += 1;
            term *= lambda / i as f64;
            if term <= sum * 1e-17 {
                break;
            }
        }
        sum.clamp(0.0, 1.0)
    } else {
        // At or left of the mode the tail is large: 1 − P(X ≤ k−1), summed downward.
        let mut i = k - 1;
        let mut term = ln_pmf(i).exp();
        let mut sum = 0.0;
        for _ in 0..MAX_TERMS {
            sum += term;
            if i == 0 || term <= sum * 1e-17 {
                break;
            }
            term *= i as f64 / lambda;
            i -= 1;
        }
        (1.0 - sum).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-300) || (a - b).abs() < 1e-15
    }

    #[test]
    fn small_values_match_direct_sums() {
        // P(X >= 1 | 1) = 1 - e^-1
        assert!(close(poisson_upper_tail(1, 1.0), 1.0 - (-1.0f64).exp()));
        // P(X >= 3 | 0.5) = 1 - e^-0.5 (1 + 0.5 + 0.125)
        let want = 1.0 - (-0.5f64).exp() * (1.0 + 0.5 + 0.125);
        assert!(close(poisson_upper_tail(3, 0.5), want));
        // P(X >= 2 | 4) = 1 - e^-4 (1 + 4)
        let want = 1.0 - (-4.0f64).exp() * 5.0;
        assert!(close(poisson_upper_tail(2, 4.0), want));
    }

    #[test]
    fn edge_cases_are_never_nan() {
        assert_eq!(poisson_upper_tail(0, 0.0), 1.0);
        assert_eq!(poisson_upper_tail(1, 0.0), 0.0);
        assert_eq!(poisson_upper_tail(5, f64::NAN), 0.0);
        assert_eq!(poisson_upper_tail(5, f64::INFINITY), 1.0);
        let p = poisson_upper_tail(10_000, 1.0);
        assert!((0.0..1e-300).contains(&p));
    }

    #[test]
    fn large_lambda_is_about_normal() {
        // lambda = 1e6, k = lambda + 3 sigma: tail ≈ 0.00135
        let p = poisson_upper_tail(1_003_000, 1e6);
        assert!((p - 0.00135).abs() < 0.0002, "{p}");
        // k at the mean: about one half
        let p = poisson_upper_tail(1_000_000, 1e6);
        assert!((p - 0.5).abs() < 0.01, "{p}");
    }

    #[test]
    fn tail_is_monotonic_in_k() {
        let mut last = 1.0;
        for k in 0..60 {
            let p = poisson_upper_tail(k, 12.5);
            assert!(p <= last + 1e-15, "k={k}");
            last = p;
        }
    }

    #[test]
    fn stirling_matches_exact_sum_at_the_switch() {
        let exact: f64 = (2..=300u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(300) - exact).abs() < 1e-9);
    }
}
