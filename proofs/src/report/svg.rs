//! Static SVG line charts: the report's fallback when scripts do not run, and its print form.

use std::fmt::Write as _;

use super::html::esc;

const W: f64 = 900.0;
const H: f64 = 190.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 890.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 166.0;

/// One line of a static chart.
pub(crate) struct Line<'a> {
    /// CSS stroke colour.
    pub colour: &'a str,
    /// One value per x (None: a break in the line).
    pub values: Vec<Option<f64>>,
}

/// A shaded span on the x axis.
pub(crate) struct Shade<'a> {
    /// CSS class (`fault`, `restart`, `gap`).
    pub class: &'a str,
    /// From, in x units.
    pub from: f64,
    /// To, in x units.
    pub to: f64,
}

fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    format!("{r}")
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// An SVG line chart over `x` with `lines` and `shades`; `x_text` labels the two ends of the x
/// axis.
pub(crate) fn line_chart(
    x: &[f64],
    lines: &[Line<'_>],
    shades: &[Shade<'_>],
    x_text: (&str, &str),
    caption: &str,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="fallback" viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(caption)
    );
    let (Some(&x0), Some(&x1)) = (x.first(), x.last()) else {
        out.push_str(r#"<text x="60" y="90" class="empty">no samples</text></svg>"#);
        return out;
    };
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let px = |v: f64| LEFT + (v - x0) / span * (RIGHT - LEFT);
    let y_max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .copied()
        .fold(0.0f64, f64::max);
    let y_top = if y_max > 0.0 { y_max } else { 1.0 };
    let py = |v: f64| BOTTOM - (v / y_top).clamp(0.0, 1.0) * (BOTTOM - TOP);
    for shade in shades {
        let (a, b) = (px(shade.from.max(x0)), px(shade.to.min(x1)));
        if b < LEFT || a > RIGHT {
            continue;
        }
        let _ = write!(
            out,
            r#"<rect class="{}" x="{}" y="{TOP}" width="{}" height="{}"/>"#,
            shade.class,
            num(a),
            num((b - a).max(1.0)),
            num(BOTTOM - TOP)
        );
    }
    let _ = write!(
        out,
        r#"<path class="axis" d="M{LEFT} {TOP}V{BOTTOM}H{RIGHT}"/><text x="{}" y="{}" class="tick" text-anchor="end">{}</text><text x="{}" y="{}" class="tick" text-anchor="end">0</text><text x="{LEFT}" y="{}" class="tick">{}</text><text x="{RIGHT}" y="{}" class="tick" text-anchor="end">{}</text>"#,
        LEFT - 4.0,
        TOP + 8.0,
        esc(&label(y_max)),
        LEFT - 4.0,
        BOTTOM,
        BOTTOM + 16.0,
        esc(x_text.0),
        BOTTOM + 16.0,
        esc(x_text.1)
    );
    for line in lines {
        let mut d = String::new();
        let mut pen_down = false;
        for (xv, yv) in x.iter().zip(&line.values) {
            match yv {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{} {}",
                        if pen_down { "L" } else { "M" },
                        num(px(*xv)),
                        num(py(*v))
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                r#"<path class="line" stroke="{}" d="{d}"/>"#,
                esc(line.colour)
            );
        }
    }
    out.push_str("</svg>");
    out
}
