//! The bench's chart: one empirical CDF per latency series on a
//! logarithmic millisecond axis, as a self-contained SVG.

use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// Most steps drawn per curve.
const MAX_STEPS: usize = 1000;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One series: a name and its samples in milliseconds.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) samples_ms: &'a [f64],
}

/// Draws `series` (empty ones are listed as "no samples") under `title`.
pub(crate) fn cdf_chart(title: &str, series: &[Series<'_>]) -> String {
    let largest = series
        .iter()
        .flat_map(|s| s.samples_ms.iter().copied())
        .fold(1.0_f64, f64::max);
    // Whole decades from 1 ms: timestamps have millisecond resolution, so
    // anything below 1 ms is drawn at 1 ms.
    let decades = largest.log10().ceil().max(1.0) as i32;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_of = |ms: f64| LEFT + ms.max(1.0).log10() / f64::from(decades) * plot_w;
    let y_of = |fraction: f64| TOP + (1.0 - fraction) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" font-size="15" font-weight="bold">{}</text>"#,
        LEFT,
        escape(title)
    );
    // Grid and axes.
    for d in 0..=decades {
        let x = x_of(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            decade_label(d)
        );
    }
    for q in 0..=4 {
        let fraction = f64::from(q) / 4.0;
        let y = y_of(fraction);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fraction * 100.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency, ms (log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">fraction of samples at or below</text>"#,
        TOP + plot_h / 2.0
    );

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let legend_y = TOP + 10.0 + i as f64 * 22.0;
        let legend = if s.samples_ms.is_empty() {
            format!("{} (no samples)", s.name)
        } else {
            format!("{} (n={})", s.name, s.samples_ms.len())
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            WIDTH - RIGHT + 15.0,
            WIDTH - RIGHT + 40.0,
            WIDTH - RIGHT + 46.0,
            legend_y + 4.0,
            escape(&legend)
        );
        if s.samples_ms.is_empty() {
            continue;
        }
        let mut sorted = s.samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        // A step function: up at each sample, flat in between. Beyond
        // MAX_STEPS samples, every k-th rank (and the last) is drawn: the
        // same curve at this size, and a file of kilobytes, not megabytes.
        let stride = sorted.len().div_ceil(MAX_STEPS);
        let mut points = format!("{:.1},{:.1}", x_of(sorted[0]), y_of(0.0));
        let mut below = 0;
        for k in (stride - 1..sorted.len())
            .step_by(stride)
            .chain((sorted.len() % stride != 0).then_some(sorted.len() - 1))
        {
            let x = x_of(sorted[k]);
            let _ = write!(
                points,
                " {x:.1},{:.1} {x:.1},{:.1}",
                y_of(below as f64 / n),
                y_of((k + 1) as f64 / n)
            );
            below = k + 1;
        }
        let _ = writeln!(
            svg,
            r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"/>"#
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn decade_label(d: i32) -> String {
    match d {
        0..=2 => format!("{}", 10i64.pow(d as u32)),
        3 => "1 s".into(),
        4 => "10 s".into(),
        5 => "100 s".into(),
        _ => format!("1e{d}"),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_one_curve_per_series_with_samples_and_escapes_names() {
        let a = [1.0, 5.0, 40.0];
        let b: [f64; 0] = [];
        let svg = cdf_chart(
            "N = 5 <bench>",
            &[
                Series {
                    name: "offers",
                    samples_ms: &a,
                },
                Series {
                    name: "instant & auction",
                    samples_ms: &b,
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("offers (n=3)"));
        assert!(svg.contains("instant &amp; auction (no samples)"));
        assert!(svg.contains("N = 5 &lt;bench&gt;"));
        // A large series is thinned to at most MAX_STEPS steps.
        let many: Vec<f64> = (0..100_000).map(|i| f64::from(i % 700)).collect();
        let big = cdf_chart(
            "big",
            &[Series {
                name: "many",
                samples_ms: &many,
            }],
        );
        let steps = big
            .split("<polyline points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            steps.split(' ').count() <= 2 * MAX_STEPS + 3,
            "{} points",
            steps.split(' ').count()
        );
        assert!(
            steps.trim_end().ends_with(",50.0"),
            "the curve must reach 100 %"
        );
        // 40 ms needs two decades: 1, 10, 100.
        assert!(svg.contains(">100</text>"));
        assert!(!svg.contains(">1 s</text>"));
    }
}
