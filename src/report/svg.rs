//! Hand-written SVG line plots (no plotting crate): axes with "nice" ticks, one polyline per
//! series, a legend. Enough for loss curves and validation metrics over training.

use std::fmt::Write;

/// One named curve of `(x, y)` points (drawn in the given order).
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
/// Margins: left (tick labels), right (legend), top (title), bottom (x label).
const LEFT: f64 = 64.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Width and height of the plot area inside the margins.
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// The data ranges on both axes, which map data coordinates to pixels in the plot area.
struct Frame {
    x_lo: f64,
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
}

impl Frame {
    /// Pixel x of data x.
    fn sx(&self, x: f64) -> f64 {
        LEFT + (x - self.x_lo) / (self.x_hi - self.x_lo) * PLOT_W
    }
    /// Pixel y of data y (SVG's y grows downwards, so the top is the largest value).
    fn sy(&self, y: f64) -> f64 {
        TOP + (1.0 - (y - self.y_lo) / (self.y_hi - self.y_lo)) * PLOT_H
    }
}

/// Whether a point can be drawn (both coordinates finite).
fn finite(&&(x, y): &&(f64, f64)) -> bool {
    x.is_finite() && y.is_finite()
}

/// An SVG document plotting `series` (non-finite points are skipped; empty series are listed in
/// the legend but draw nothing).
pub fn line_plot(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied())
        .collect();
    let (x_lo, x_hi) = padded_range(all.iter().map(|p| p.0));
    let (y_lo, y_hi) = padded_range(all.iter().map(|p| p.1));
    let frame = Frame {
        x_lo,
        x_hi,
        y_lo,
        y_hi,
    };

    let mut svg = String::new();
    write_header(&mut svg, title);
    write_grid(&mut svg, &frame);
    write_axis_labels(&mut svg, x_label, y_label);
    for (i, s) in series.iter().enumerate() {
        write_series(&mut svg, &frame, i, s);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The opening `<svg>` tag, a white background and the title centred above the plot area.
fn write_header(svg: &mut String, title: &str) {
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        escape(title)
    );
}

/// Grid lines with their tick labels on both axes, then the frame around the plot area.
fn write_grid(svg: &mut String, frame: &Frame) {
    for t in ticks(frame.x_lo, frame.x_hi) {
        let x = frame.sx(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 16.0,
            tick_label(t)
        );
    }
    for t in ticks(frame.y_lo, frame.y_hi) {
        let y = frame.sy(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="black"/>"#
    );
}

/// The x label below the plot area and the y label rotated along its left side.
fn write_axis_labels(svg: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + PLOT_W / 2.0,
        HEIGHT - 10.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        escape(y_label)
    );
}

/// Series number `i`: its curve (a dot when it has a single finite point, nothing when it has
/// none) and its legend entry in the right margin.
fn write_series(svg: &mut String, frame: &Frame, i: usize, s: &Series) {
    let color = COLORS[i % COLORS.len()];
    let pts: Vec<String> = s
        .points
        .iter()
        .filter(finite)
        .map(|&(x, y)| format!("{:.1},{:.1}", frame.sx(x), frame.sy(y)))
        .collect();
    if pts.len() == 1 {
        let _ = writeln!(
            svg,
            r#"<circle cx="{}" r="3" fill="{color}"/>"#,
            pts[0].replacen(',', "\" cy=\"", 1)
        );
    } else if !pts.is_empty() {
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
    }
    let ly = TOP + 12.0 + 18.0 * i as f64;
    let lx = LEFT + PLOT_W + 12.0;
    let _ = writeln!(
        svg,
        r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
        lx + 20.0,
        lx + 26.0,
        ly + 4.0,
        escape(&s.name)
    );
}

/// Min and max of the values, widened when degenerate so the scale never divides by zero.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = lo.abs().max(1.0) * 0.05;
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// About five ticks at a 1/2/5 x 10^k spacing inside [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.013, 0.047);
        assert!(t.iter().all(|&v| (0.013..=0.047).contains(&v)) && t.len() >= 3);
    }

    #[test]
    fn plot_has_one_polyline_per_curve_and_escapes_names() {
        let s = vec![
            Series {
                name: "ce".into(),
                points: vec![(0.0, 3.0), (1.0, 2.0), (2.0, f64::NAN), (3.0, 1.0)],
            },
            Series {
                name: "a<b".into(),
                points: vec![(0.0, 0.5)],
            },
        ];
        let svg = line_plot("loss", "step", "value", &s);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("a&lt;b") && !svg.contains("NaN"));
        // The polyline has the three finite points.
        let line = svg.lines().find(|l| l.contains("<polyline")).unwrap();
        assert_eq!(
            line.split("points=\"").nth(1).unwrap().split(' ').count(),
            3
        );
    }
}
