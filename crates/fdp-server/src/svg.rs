//! Charts drawn as SVG on the server: no script, readable by screen readers
//! through their titles and the table beside them.

use maud::{html, Markup};

/// One bar of a stacked horizontal bar chart.
pub struct StackedBar<'a> {
    pub label: &'a str,
    /// (value, CSS class, name) for each part, drawn left to right.
    pub parts: Vec<(usize, &'static str, &'static str)>,
}

/// A stacked horizontal bar chart, one bar a row.
pub fn stacked_bars(title: &str, bars: &[StackedBar]) -> Markup {
    let row_h = 22usize;
    let label_w = 260usize;
    let chart_w = 420usize;
    let max = bars
        .iter()
        .map(|b| b.parts.iter().map(|p| p.0).sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let height = row_h * bars.len() + 8;
    html! {
        svg.chart role="img" aria-label=(title) width=(label_w + chart_w + 60) height=(height)
            viewBox=(format!("0 0 {} {}", label_w + chart_w + 60, height)) {
            title { (title) }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = i * row_h + 4;
                text x=(label_w - 6) y=(y + 15) text-anchor="end" class="chart-label" { (bar.label) }
                @for (x, w, value, class, name) in layout(&bar.parts, label_w as f64, chart_w as f64 / max as f64) {
                    rect class=(class) x=(format!("{x:.1}")) y=(y) width=(format!("{w:.1}")) height=(row_h - 6) {
                        title { (bar.label) ": " (value) " " (name) }
                    }
                }
                text x=(label_w + chart_w + 6) y=(y + 15) class="chart-label" {
                    (bar.parts.iter().map(|p| p.0).sum::<usize>())
                }
            }
        }
    }
}

/// Where each part of a bar starts and how wide it is.
fn layout(
    parts: &[(usize, &'static str, &'static str)],
    start: f64,
    scale: f64,
) -> Vec<(f64, f64, usize, &'static str, &'static str)> {
    let mut x = start;
    parts
        .iter()
        .map(|&(value, class, name)| {
            let w = value as f64 * scale;
            let at = x;
            x += w;
            (at, w, value, class, name)
        })
        .collect()
}
