//! Hand-written SVG plots (no plotting crate): axes with "nice" ticks and a legend.
//! [`line_plot`]: one polyline per series (loss curves, validation metrics over training).
//! [`bar_chart`]: clusters of bars with error bars (`study`: a metric's mean +- std over seeds,
//! per data set and method).

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
    write_y_grid(svg, frame);
}

/// Horizontal grid lines with their tick labels, then the frame around the plot area.
fn write_y_grid(svg: &mut String, frame: &Frame) {
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

/// One bar: its height and the half-length of its error bar (a standard deviation, say; 0
/// draws none). The bar's name picks its colour and legend entry.
#[derive(Clone, Debug)]
pub struct Bar {
    pub name: String,
    pub value: f64,
    pub error: f64,
}

/// Bars side by side above one label on the x axis (a data set, say).
#[derive(Clone, Debug)]
pub struct BarGroup {
    pub name: String,
    pub bars: Vec<Bar>,
}

/// An SVG bar chart: one cluster per group, a colour per bar name (the same name has the same
/// colour in every group, listed once in the legend), an error bar `value +- error` on each
/// bar, the y axis from 0. Bars whose value is not finite are left out.
pub fn bar_chart(title: &str, y_label: &str, groups: &[BarGroup]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for b in groups.iter().flat_map(|g| &g.bars) {
        if !names.contains(&b.name.as_str()) {
            names.push(&b.name);
        }
    }
    let top = groups
        .iter()
        .flat_map(|g| &g.bars)
        .map(|b| b.value + b.error.max(0.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let (_, y_hi) = padded_range([0.0, top * 1.05].into_iter());
    let frame = Frame {
        x_lo: 0.0,
        x_hi: groups.len().max(1) as f64,
        y_lo: 0.0,
        y_hi,
    };
    let mut svg = String::new();
    write_header(&mut svg, title);
    write_y_grid(&mut svg, &frame);
    write_axis_labels(&mut svg, "", y_label);
    for (g, group) in groups.iter().enumerate() {
        write_bar_group(&mut svg, &frame, g, group, &names);
    }
    for (i, name) in names.iter().enumerate() {
        let (lx, ly) = (LEFT + PLOT_W + 12.0, TOP + 12.0 + 18.0 * i as f64);
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly - 5.0,
            COLORS[i % COLORS.len()],
            lx + 20.0,
            ly + 4.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Group number `g` in its slot [g, g + 1) of the x axis: 80% of the slot split among its
/// bars, each a rect with an error bar (a vertical line with caps), the group name below.
fn write_bar_group(svg: &mut String, frame: &Frame, g: usize, group: &BarGroup, names: &[&str]) {
    let slot = frame.sx(1.0) - frame.sx(0.0);
    let width = slot * 0.8 / group.bars.len().max(1) as f64;
    let left = frame.sx(g as f64) + slot * 0.1;
    for (i, bar) in group.bars.iter().enumerate() {
        if !bar.value.is_finite() {
            continue;
        }
        let color = COLORS[names.iter().position(|n| *n == bar.name).unwrap_or(0) % COLORS.len()];
        let x = left + width * i as f64;
        let (y, base) = (frame.sy(bar.value), frame.sy(0.0));
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} {}: {:.4} +- {:.4}</title></rect>"#,
            width * 0.9,
            base - y,
            escape(&group.name),
            escape(&bar.name),
            bar.value,
            bar.error
        );
        if bar.error > 0.0 && bar.error.is_finite() {
            let cx = x + width * 0.45;
            let (hi, lo) = (
                frame.sy(bar.value + bar.error),
                frame.sy(bar.value - bar.error),
            );
            let _ = writeln!(
                svg,
                r#"<path class="error" d="M{cx:.1} {hi:.1}V{lo:.1}M{:.1} {hi:.1}h{:.1}M{:.1} {lo:.1}h{:.1}" stroke="black" fill="none"/>"#,
                cx - 4.0,
                8.0,
                cx - 4.0,
                8.0
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        frame.sx(g as f64 + 0.5),
        TOP + PLOT_H + 16.0,
        escape(&group.name)
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

    #[test]
    fn bar_chart_has_a_bar_and_an_error_bar_per_finite_value() {
        let bar = |name: &str, value: f64, error: f64| Bar {
            name: name.into(),
            value,
            error,
        };
        let groups = vec![
            BarGroup {
                name: "ml<small>".into(),
                bars: vec![bar("SFT", 0.02, 0.004), bar("ILRec", 0.03, 0.0)],
            },
            BarGroup {
                name: "office".into(),
                bars: vec![bar("SFT", 0.05, 0.01), bar("ILRec", f64::NAN, 0.01)],
            },
        ];
        let svg = bar_chart("test NDCG@10", "NDCG@10", &groups);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Three finite bars (+ two legend swatches, + background and frame rects).
        assert_eq!(svg.matches("<title>").count(), 3);
        assert_eq!(svg.matches("class=\"error\"").count(), 2);
        assert!(svg.contains("ml&lt;small&gt;") && !svg.contains("NaN"));
        // The same name keeps its colour across groups; the tallest error bar fits the axis.
        let fills: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains("<title>SFT") || l.contains(" SFT:"))
            .map(|l| {
                l.split("fill=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[0], fills[1]);
        let frame_top = TOP;
        for l in svg.lines().filter(|l| l.contains("class=\"error\"")) {
            let y: f64 = l
                .split('M')
                .nth(1)
                .unwrap()
                .split(['V', ' '])
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            assert!(y >= frame_top, "{l}");
        }
    }
}
