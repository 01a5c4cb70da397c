//! Charts drawn as SVG on the server: no script, readable by screen readers
//! through their titles and the table beside them.

use maud::{html, Markup};

/// One bar of a stacked horizontal bar chart.
pub struct StackedBar<'a> {
    pub label: &'a str,
    /// (value, CSS class, name) for each part, drawn left to right.
    pub parts: Vec<(usize, &'static str, &'a str)>,
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
fn layout<'a>(
    parts: &[(usize, &'static str, &'a str)],
    start: f64,
    scale: f64,
) -> Vec<(f64, f64, usize, &'static str, &'a str)> {
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

/// One line of a [`lines`] chart: its name, CSS class, and its value at
/// each point along the bottom (none where the row has no number).
pub struct Line<'a> {
    pub name: &'a str,
    pub class: &'static str,
    pub values: Vec<Option<f64>>,
}

/// A line chart: `labels` along the bottom, one line for each of `lines`,
/// each point titled with its value, and a legend. The scale runs from 0
/// to the largest value (at least 1, so that ratios read against 100%).
pub fn lines(title: &str, labels: &[String], lines: &[Line]) -> Markup {
    let (left, top, plot_w, plot_h, bottom) = (60.0, 16.0, 640.0, 220.0, 50.0);
    let max = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten().copied())
        .fold(1.0_f64, f64::max);
    let step = if labels.len() > 1 {
        plot_w / (labels.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| left + step * i as f64;
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let ticks: Vec<f64> = (0..=4).map(|k| max * f64::from(k) / 4.0).collect();
    let width = left + plot_w + 40.0;
    let height = top + plot_h + bottom;
    // Label every point along the bottom when they fit, else every few.
    let every = labels.len().div_ceil(12).max(1);
    html! {
        svg.chart role="img" aria-label=(title) width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) {
            title { (title) }
            @for t in &ticks {
                line.grid x1=(left) x2=(left + plot_w) y1=(format!("{:.1}", y(*t))) y2=(format!("{:.1}", y(*t))) {}
                text.chart-label x=(left - 6.0) y=(format!("{:.1}", y(*t) + 4.0)) text-anchor="end" { (format_tick(*t)) }
            }
            @for (i, label) in labels.iter().enumerate() {
                @if i % every == 0 {
                    text.chart-label x=(format!("{:.1}", x(i))) y=(top + plot_h + 18.0) text-anchor="middle" { (label) }
                }
            }
            @for line in lines {
                @let points = line.values.iter().enumerate()
                    .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
                    .collect::<Vec<_>>().join(" ");
                polyline class=(line.class) fill="none" points=(points) {
                    title { (line.name) }
                }
                @for (i, v) in line.values.iter().enumerate() {
                    @if let Some(v) = v {
                        circle class=(line.class) cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*v))) r="3" {
                            title { (labels[i]) ": " (line.name) " " (v) }
                        }
                    }
                }
            }
            @for (k, line) in lines.iter().enumerate() {
                @let lx = left + 200.0 * k as f64;
                rect class=(line.class) x=(lx) y=(height - 16.0) width="12" height="12" {}
                text.chart-label x=(lx + 16.0) y=(height - 6.0) { (line.name) }
            }
        }
    }
}

/// A heat map: a row for each of `rows`, a column for each of `columns`,
/// and each cell of `cells` (row, column, value) shaded in five bands from
/// the lowest value (strongest) to the highest; a cell with no value is
/// left blank. Each cell is titled with its row, column and value.
pub fn heat(
    title: &str,
    rows: &[String],
    columns: &[String],
    cells: &[(usize, usize, f64)],
) -> Markup {
    let (label_w, cell_w, cell_h, head_h) = (200.0, 64.0, 22.0, 90.0);
    let (lo, hi) = cells
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c.2), hi.max(c.2))
        });
    let band = |v: f64| -> usize {
        if hi <= lo {
            return 2;
        }
        (((v - lo) / (hi - lo)) * 4.999).floor() as usize
    };
    let width = label_w + cell_w * columns.len() as f64 + 10.0;
    let height = head_h + cell_h * rows.len() as f64 + 6.0;
    html! {
        svg.chart role="img" aria-label=(title) width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) {
            title { (title) }
            @for (j, c) in columns.iter().enumerate() {
                @let x = label_w + cell_w * j as f64 + cell_w / 2.0;
                text.chart-label x=(format!("{x:.1}")) y=(head_h - 6.0) text-anchor="start"
                    transform=(format!("rotate(-40 {x:.1} {:.1})", head_h - 6.0)) { (c) }
            }
            @for (i, r) in rows.iter().enumerate() {
                text.chart-label x=(label_w - 6.0) y=(format!("{:.1}", head_h + cell_h * i as f64 + 15.0)) text-anchor="end" { (r) }
            }
            @for &(i, j, v) in cells {
                rect class=(format!("heat-{}", band(v)))
                    x=(format!("{:.1}", label_w + cell_w * j as f64)) y=(format!("{:.1}", head_h + cell_h * i as f64))
                    width=(cell_w - 2.0) height=(cell_h - 2.0) {
                    title { (rows[i]) ", " (columns[j]) ": " (format_tick(v)) }
                }
                text.chart-label x=(format!("{:.1}", label_w + cell_w * j as f64 + cell_w / 2.0)) y=(format!("{:.1}", head_h + cell_h * i as f64 + 15.0)) text-anchor="middle" { (format_tick(v)) }
            }
        }
    }
}

/// A tick's value: whole numbers as they are, fractions to two places.
fn format_tick(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The lineage picture: four columns (sources, raw tables, canonical parts,
/// canonical tables) joined by curves from each node to what it feeds.
pub fn lineage_picture(title: &str, l: &fdp_ingest::runs::Lineage) -> Markup {
    let (col_w, node_w, row_h, node_h) = (250usize, 210usize, 30usize, 22usize);
    let mut rows = [0usize; 4];
    let mut at = Vec::with_capacity(l.nodes.len());
    for n in &l.nodes {
        let c = n.column.min(3) as usize;
        at.push((c * col_w + 10, rows[c] * row_h + 36));
        rows[c] += 1;
    }
    let height = rows.iter().max().copied().unwrap_or(0) * row_h + 50;
    let width = 4 * col_w + 10;
    let headings = [
        "Sources",
        "Raw (as received)",
        "Canonical parts",
        "Canonical tables",
    ];
    html! {
        svg.chart role="img" aria-label=(title) width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) {
            title { (title) }
            @for (i, h) in headings.iter().enumerate() {
                text x=(i * col_w + 10) y="16" font-weight="bold" font-size="13" { (h) }
            }
            @for (a, b) in &l.edges {
                @let ((x1, y1), (x2, y2)) = (at[*a], at[*b]);
                @let (sx, sy, ex, ey) = (x1 + node_w, y1 + node_h / 2, x2, y2 + node_h / 2);
                path fill="none" stroke="#768692" stroke-width="1.2"
                    d=(format!("M{sx},{sy} C{},{sy} {},{ey} {ex},{ey}", (sx + ex) / 2, (sx + ex) / 2)) {}
            }
            @for (n, (x, y)) in l.nodes.iter().zip(&at) {
                g {
                    title { (n.name) }
                    rect x=(x) y=(y) width=(node_w) height=(node_h) rx="4"
                        fill=(["#e8edee", "#fff9c4", "#e3f2fd", "#c8e6c9"][n.column.min(3) as usize]) stroke="#425563" {}
                    text x=(x + 6) y=(y + 15) font-size="12" {
                        (if n.name.chars().count() > 32 { format!("{}…", n.name.chars().take(31).collect::<String>()) } else { n.name.clone() })
                    }
                }
            }
        }
    }
}
