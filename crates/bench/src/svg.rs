//! `throughput.svg`: deliveries accepted per second over time, hand-written SVG.
//!
//! No plotting crate: a chart of two or three lines is a few dozen SVG elements, and a
//! dependency-free writer renders the same in every browser. The left axis is the accepted
//! rate (a trailing-window average, so 250 ms sampling does not make it saw-toothed); the
//! right axis is the cumulative count of accepted deliveries and, dashed, of delivery messages
//! the parser had fanned out. Axes get "nice" ticks (1, 2, 5 × 10ⁿ).

use std::fmt::Write as _;

/// What the chart shows.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title line.
    pub title: String,
    /// Second, smaller line under the title.
    pub subtitle: String,
    /// Sample times, seconds since the send.
    pub t_s: Vec<f64>,
    /// Accepted per second at each sample.
    pub rate: Vec<f64>,
    /// Cumulative accepted at each sample.
    pub accepted: Vec<f64>,
    /// Cumulative fanned out at each sample (empty: not drawn).
    pub fanned_out: Vec<f64>,
    /// Expected total, so the right axis reaches it even on a partial run.
    pub target: f64,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 100.0;
const TOP: f64 = 78.0;
const BOTTOM: f64 = 62.0;
const RATE_COLOUR: &str = "#1f77b4";
const ACCEPTED_COLOUR: &str = "#ff7f0e";
const FANOUT_COLOUR: &str = "#7f7f7f";

/// Renders `chart` as a standalone SVG document.
pub fn render(chart: &Chart) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max_of = |v: &[f64]| v.iter().copied().fold(0.0_f64, f64::max);
    let (x_step, x_max) = nice_axis(max_of(&chart.t_s));
    let (rate_step, rate_max) = nice_axis(max_of(&chart.rate));
    let cumulative = max_of(&chart.accepted)
        .max(max_of(&chart.fanned_out))
        .max(chart.target);
    let (count_step, count_max) = nice_axis(cumulative);
    let x = |t: f64| LEFT + t / x_max * plot_w;
    let y_rate = |r: f64| TOP + plot_h - r / rate_max * plot_h;
    let y_count = |c: f64| TOP + plot_h - c / count_max * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="17" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(&chart.title)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="48" text-anchor="middle" fill="#555">{}</text>"##,
        WIDTH / 2.0,
        escape(&chart.subtitle)
    );

    // Grid and tick labels: time below, rate left, cumulative right.
    let bottom = TOP + plot_h;
    for t in ticks(x_step, x_max) {
        let px = x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{bottom}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 18.0,
            format_number(t)
        );
    }
    for r in ticks(rate_step, rate_max) {
        let py = y_rate(r);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{RATE_COLOUR}">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0,
            format_number(r)
        );
    }
    for c in ticks(count_step, count_max) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{ACCEPTED_COLOUR}">{}</text>"#,
            LEFT + plot_w + 8.0,
            y_count(c) + 4.0,
            format_number(c)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds since pushctl send</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(24 {:.1}) rotate(-90)" text-anchor="middle" fill="{RATE_COLOUR}">accepted per second</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1} {:.1}) rotate(90)" text-anchor="middle" fill="{ACCEPTED_COLOUR}">cumulative deliveries</text>"#,
        WIDTH - 24.0,
        TOP + plot_h / 2.0
    );

    // The lines.
    if !chart.fanned_out.is_empty() {
        polyline(
            &mut svg,
            &chart.t_s,
            &chart.fanned_out,
            x,
            y_count,
            FANOUT_COLOUR,
            r#" stroke-dasharray="6 4""#,
        );
    }
    polyline(
        &mut svg,
        &chart.t_s,
        &chart.accepted,
        x,
        y_count,
        ACCEPTED_COLOUR,
        "",
    );
    polyline(
        &mut svg,
        &chart.t_s,
        &chart.rate,
        x,
        y_rate,
        RATE_COLOUR,
        "",
    );

    // Legend, top left inside the plot.
    let mut legend = vec![
        (RATE_COLOUR, "", "accepted/s (left)"),
        (ACCEPTED_COLOUR, "", "accepted, cumulative (right)"),
    ];
    if !chart.fanned_out.is_empty() {
        legend.push((
            FANOUT_COLOUR,
            r#" stroke-dasharray="6 4""#,
            "fanned out, cumulative (right)",
        ));
    }
    for (i, (colour, dash, label)) in legend.into_iter().enumerate() {
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            LEFT + 12.0,
            LEFT + 40.0,
            LEFT + 46.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn polyline(
    svg: &mut String,
    xs: &[f64],
    ys: &[f64],
    x: impl Fn(f64) -> f64,
    y: impl Fn(f64) -> f64,
    colour: &str,
    extra: &str,
) {
    let points: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(&t, &v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"{extra} points="{}"/>"#,
        points.join(" ")
    );
}

/// A "nice" tick step (1, 2 or 5 × 10ⁿ) giving about six ticks up to `max`, and the axis end
/// (a multiple of the step at or above `max`). A zero or negative `max` gives a unit axis.
pub fn nice_axis(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (0.2, 1.0);
    }
    let rough = max / 6.0;
    let magnitude = 10f64.powi(rough.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude);
    (step, (max / step).ceil() * step)
}

/// Tick values 0, step, ... up to and including `max`.
fn ticks(step: f64, max: f64) -> Vec<f64> {
    let n = (max / step).round() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// `1500000` → `1.5M`, `12000` → `12k`, `2.5` → `2.5`.
pub fn format_number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else {
        trim(format!("{v:.2}"))
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

    fn chart(n: usize) -> Chart {
        let t_s: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
        let accepted: Vec<f64> = (0..n).map(|i| (i * 1000) as f64).collect();
        Chart {
            title: "1,000 subscribers & <2> senders".into(),
            subtitle: "tls".into(),
            rate: vec![4000.0; n],
            fanned_out: accepted.iter().map(|a| a * 1.5).collect(),
            accepted,
            t_s,
            target: 50_000.0,
        }
    }

    fn points_of(svg: &str, colour: &str) -> usize {
        let line = svg
            .lines()
            .find(|l| l.starts_with("<polyline") && l.contains(colour))
            .expect("polyline present");
        let start = line.find("points=\"").expect("points") + 8;
        let end = line[start..].find('"').expect("closing quote") + start;
        line[start..end].split_whitespace().count()
    }

    #[test]
    fn renders_a_well_formed_document_with_one_point_per_sample() {
        let svg = render(&chart(41));
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(points_of(&svg, RATE_COLOUR), 41);
        assert_eq!(points_of(&svg, ACCEPTED_COLOUR), 41);
        // Every element other than svg/text is self-closing.
        for line in svg.lines().filter(|l| {
            l.starts_with("<line") || l.starts_with("<rect") || l.starts_with("<polyline")
        }) {
            let first = line.split("<text").next().unwrap_or(line);
            assert!(first.trim_end().ends_with("/>"), "{line}");
        }
        assert!(svg.contains("1,000 subscribers &amp; &lt;2&gt; senders"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_and_flat_charts_still_render() {
        let svg = render(&Chart::default());
        assert!(svg.ends_with("</svg>\n"));
        assert!(!svg.contains("NaN"));
        let mut flat = chart(3);
        flat.rate = vec![0.0; 3];
        flat.fanned_out.clear();
        let svg = render(&flat);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn axes_get_nice_steps() {
        assert_eq!(nice_axis(100.0), (20.0, 100.0));
        assert_eq!(nice_axis(1_000_000.0), (200_000.0, 1_000_000.0));
        assert_eq!(nice_axis(13_700.0), (5_000.0, 15_000.0));
        assert_eq!(nice_axis(0.0), (0.2, 1.0));
        let (step, max) = nice_axis(87.3);
        assert_eq!((step, max), (20.0, 100.0));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(format_number(1_500_000.0), "1.5M");
        assert_eq!(format_number(1_000_000.0), "1M");
        assert_eq!(format_number(12_000.0), "12k");
        assert_eq!(format_number(2_500.0), "2.5k");
        assert_eq!(format_number(40.0), "40");
        assert_eq!(format_number(0.25), "0.25");
    }
}
