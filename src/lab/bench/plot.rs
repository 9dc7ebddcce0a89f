//! Small self-contained SVG line charts: no plotting library, no fonts to ship, opens in a browser.

use std::fmt::Write as _;

/// One line on a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette.
    pub colour: usize,
    /// 0 solid, 1 dashed, 2 dotted.
    pub dash: usize,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A line chart: x on a log scale when it spans a factor of 10 or more (connection sweeps); y
/// linear from zero, or logarithmic when its positive values span a factor of 100 or more
/// (latencies of a fast and a collapsing system on one chart).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max, mut y_max) = (f64::MAX, f64::MIN, 0.0f64);
    let mut y_min_positive = f64::MAX;
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_max = y_max.max(y);
        if y > 0.0 {
            y_min_positive = y_min_positive.min(y);
        }
    }
    let log_y = y_min_positive < f64::MAX && y_max / y_min_positive >= 100.0;
    if x_min > x_max {
        (x_min, x_max) = (0.0, 1.0);
    }
    let log_x = x_min > 0.0 && x_max / x_min >= 10.0;
    let (x_lo, x_hi) = if log_x {
        (x_min.log10(), x_max.log10())
    } else if x_max > x_min {
        (x_min, x_max)
    } else {
        (x_min - 1.0, x_max + 1.0)
    };
    let y_hi = nice_ceiling(if y_max > 0.0 { y_max * 1.05 } else { 1.0 });
    // Log y: whole decades from just below the smallest positive value to just above the largest.
    let (y_lo_exp, y_hi_exp) = (
        y_min_positive.log10().floor(),
        y_max
            .max(1e-12)
            .log10()
            .ceil()
            .max(y_min_positive.log10().floor() + 1.0),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |x: f64| {
        let v = if log_x { x.max(1e-12).log10() } else { x };
        LEFT + (v - x_lo) / (x_hi - x_lo) * plot_w
    };
    let py = |y: f64| {
        let fraction = if log_y {
            (y.max(10f64.powf(y_lo_exp)).log10() - y_lo_exp) / (y_hi_exp - y_lo_exp)
        } else {
            y / y_hi
        };
        TOP + plot_h - fraction * plot_h
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"##,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    // Grid and y ticks.
    let y_ticks: Vec<f64> = if log_y {
        (y_lo_exp as i32..=y_hi_exp as i32)
            .map(|e| 10f64.powi(e))
            .collect()
    } else {
        (0..=5).map(|i| y_hi * i as f64 / 5.0).collect()
    };
    for y in y_ticks {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py(y) + 4.0,
            format_number(y),
            py = py(y),
        );
    }
    // X ticks at the data's x values (connection counts).
    let mut xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in xs {
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            format_number(x),
            px = px(x),
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}{}</text>
<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>
"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        escape(x_label),
        if log_x { " (log scale)" } else { "" },
        TOP + plot_h / 2.0,
        escape(y_label),
    );
    if log_y {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="10" fill="#666">log scale</text>"##,
            LEFT + 4.0,
            TOP - 6.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[s.colour % COLOURS.len()];
        let dash = [
            "",
            r#" stroke-dasharray="7 4""#,
            r#" stroke-dasharray="2 3""#,
        ][s.dash.min(2)];
        let mut sorted = s.points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"##,
            path.join(" ")
        );
        for &(x, y) in &sorted {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{}: {} at {}</title></circle>"##,
                px(x),
                py(y),
                escape(&s.label),
                format_number(y),
                format_number(x)
            );
        }
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"{dash}/><text x="{}" y="{}">{}</text>"##,
            WIDTH - RIGHT + 12.0,
            WIDTH - RIGHT + 32.0,
            WIDTH - RIGHT + 38.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest 1, 2 or 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= v {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn format_number(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings_are_1_2_or_5_times_a_power_of_ten() {
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1234.0), 2000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn a_chart_has_one_line_per_series_and_escapes_labels() {
        let svg = line_chart(
            "a <b>",
            "connections",
            "requests/s",
            &[
                Series {
                    label: "A & B".into(),
                    points: vec![(1.0, 10.0), (10.0, 80.0), (100.0, 95.0)],
                    colour: 0,
                    dash: 0,
                },
                Series {
                    label: "C".into(),
                    points: vec![(1.0, 5.0), (100.0, 50.0)],
                    colour: 1,
                    dash: 1,
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("A &amp; B"));
        assert!(svg.contains("(log scale)"));
        assert!(
            !svg.contains(">log scale<"),
            "y stays linear over a 19× span"
        );
    }

    #[test]
    fn y_turns_logarithmic_over_two_decades() {
        let svg = line_chart(
            "latency",
            "connections",
            "ms",
            &[Series {
                label: "p99".into(),
                points: vec![(1.0, 0.5), (10.0, 3000.0)],
                colour: 0,
                dash: 0,
            }],
        );
        assert!(svg.contains(">log scale<"));
        assert!(svg.contains(">1000<") && svg.contains(">0.10<"));
    }
}
