//! Mean, median, min and max of repeated measurements, and the least-squares slope of a series.

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        n,
        mean: v.iter().sum::<f64>() / n as f64,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// The least-squares slope of y over x; 0 with fewer than two points or when every x is the
/// same (no line to fit).
pub fn slope(points: &[(f64, f64)]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    // Centred first (two passes): a flat series comes out exactly 0, not a rounding error.
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(sxy, sxx), &(x, y)| {
        (sxy + (x - mx) * (y - my), sxx + (x - mx) * (x - mx))
    });
    if sxx == 0.0 {
        return 0.0;
    }
    sxy / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_even_empty() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.mean, s.median, s.min, s.max), (2.0, 2.0, 1.0, 3.0));
        assert_eq!(summarize(&[1.0, 2.0, 3.0, 10.0]).unwrap().median, 2.5);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        // y = 3x + 7 exactly; then scattered points.
        let line: Vec<(f64, f64)> = (0..5).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-12);
        let noisy = [(0.0, 1.0), (1.0, 0.0), (2.0, 3.0), (3.0, 2.0)];
        // Σ(x - 1.5)(y - 1.5) = 3 over Σ(x - 1.5)² = 5.
        assert!((slope(&noisy) - 0.6).abs() < 1e-12);
        assert!((slope(&[(0.0, 5.0), (1.0, 4.0)]) + 1.0).abs() < 1e-12);
        assert_eq!(slope(&[(1.0, 2.0)]), 0.0);
        assert_eq!(slope(&[]), 0.0);
        assert_eq!(slope(&[(2.0, 1.0), (2.0, 9.0)]), 0.0);
    }
}
