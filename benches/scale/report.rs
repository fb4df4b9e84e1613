//! Curves, their Markdown tables (ours and etcd-proxy side by side, with
//! ratios) and their SVG charts (log x axis).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

/// One measured point of one target.
pub struct Point {
    /// Watchers, connections, clients, ...
    pub x: u64,
    /// Metric key to value.
    pub v: BTreeMap<&'static str, f64>,
    /// None when the point passed, else what went wrong.
    pub failure: Option<String>,
}

impl Point {
    /// An empty point at `x`.
    pub fn new(x: u64) -> Point {
        Point {
            x,
            v: BTreeMap::new(),
            failure: None,
        }
    }

    /// Sets a metric when known.
    pub fn set(&mut self, k: &'static str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.v.insert(k, v);
        }
    }
}

/// One metric column group.
pub struct Metric {
    /// Key in [`Point::v`].
    pub key: &'static str,
    /// Column header.
    pub header: &'static str,
    /// Decimals shown.
    pub decimals: usize,
    /// Drawn in the SVG.
    pub plot: bool,
}

/// Shorthand for a [`Metric`].
pub const fn m(key: &'static str, header: &'static str, decimals: usize, plot: bool) -> Metric {
    Metric {
        key,
        header,
        decimals,
        plot,
    }
}

/// The points of one target on one curve.
pub struct Series {
    /// Target name.
    pub target: &'static str,
    /// Points in the order run.
    pub points: Vec<Point>,
    /// Points not run (after a failure, or by choice), with why.
    pub skipped: Vec<(u64, String)>,
}

/// One curve: a table, a chart and a "what failed first" line per target.
pub struct Curve {
    /// File stem of the SVG.
    pub file: &'static str,
    /// Section title.
    pub title: String,
    /// What x counts.
    pub x_label: &'static str,
    /// Columns.
    pub metrics: Vec<Metric>,
    /// One per target.
    pub series: Vec<Series>,
    /// Free text under the table.
    pub notes: Vec<String>,
}

fn fmt_num(v: f64, decimals: usize) -> String {
    if v.abs() >= 10_000.0 && decimals == 0 {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.split_at(if s.starts_with('-') { 1 } else { 0 });
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else {
        format!("{v:.decimals$}")
    }
}

/// `1,000,000` style.
pub fn fmt_count(x: u64) -> String {
    fmt_num(x as f64, 0)
}

impl Curve {
    fn xs(&self) -> Vec<u64> {
        let mut xs: Vec<u64> = self
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|p| p.x)
                    .chain(s.skipped.iter().map(|k| k.0))
            })
            .collect();
        xs.sort_unstable();
        xs.dedup();
        xs
    }

    fn point(&self, target: &str, x: u64) -> Option<&Point> {
        self.series
            .iter()
            .find(|s| s.target == target)?
            .points
            .iter()
            .find(|p| p.x == x)
    }

    fn cell(&self, target: &str, x: u64, metric: &Metric) -> String {
        match self.point(target, x) {
            None => "–".to_string(),
            Some(p) => match p.v.get(metric.key) {
                Some(v) => fmt_num(*v, metric.decimals),
                None => "–".to_string(),
            },
        }
    }

    /// The Markdown section.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## {}\n", self.title);
        let targets: Vec<&str> = self.series.iter().map(|s| s.target).collect();
        let has = |t: &str| targets.contains(&t);
        let mut head = format!("| {} |", self.x_label);
        let mut sep = String::from("|---:|");
        for m in &self.metrics {
            for t in ["ours", "etcd-proxy"] {
                if has(t) {
                    let _ = write!(head, " {} {} |", m.header, t);
                    sep.push_str("---:|");
                }
            }
            if has("ours") && has("etcd-proxy") {
                let _ = write!(head, " ratio |");
                sep.push_str("---:|");
            }
            if has("direct")
                && self
                    .series
                    .iter()
                    .find(|s| s.target == "direct")
                    .is_some_and(|s| s.points.iter().any(|p| p.v.contains_key(m.key)))
            {
                let _ = write!(head, " {} direct |", m.header);
                sep.push_str("---:|");
            }
        }
        for t in &targets {
            let _ = write!(head, " status {t} |");
            sep.push_str(":---|");
        }
        let _ = writeln!(out, "{head}\n{sep}");
        for x in self.xs() {
            let mut row = format!("| {} |", fmt_count(x));
            for m in &self.metrics {
                for t in ["ours", "etcd-proxy"] {
                    if has(t) {
                        let _ = write!(row, " {} |", self.cell(t, x, m));
                    }
                }
                if has("ours") && has("etcd-proxy") {
                    let a = self.point("ours", x).and_then(|p| p.v.get(m.key));
                    let b = self.point("etcd-proxy", x).and_then(|p| p.v.get(m.key));
                    let r = match (a, b) {
                        (Some(a), Some(b)) if *b != 0.0 => format!("{:.2}", a / b),
                        _ => "–".to_string(),
                    };
                    let _ = write!(row, " {r} |");
                }
                if head.contains(&format!(" {} direct |", m.header)) {
                    let _ = write!(row, " {} |", self.cell("direct", x, m));
                }
            }
            for s in &self.series {
                let status = if let Some(p) = s.points.iter().find(|p| p.x == x) {
                    match &p.failure {
                        None => "ok".to_string(),
                        Some(f) => format!("FAILED: {}", f.replace('|', "/")),
                    }
                } else if let Some((_, why)) = s.skipped.iter().find(|k| k.0 == x) {
                    format!("not run: {why}")
                } else {
                    "–".to_string()
                };
                let _ = write!(row, " {status} |");
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out, "\nRatio = ours / etcd-proxy.\n");
        for s in &self.series {
            let _ = writeln!(
                out,
                "- what failed first, **{}**: {}",
                s.target,
                s.verdict()
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "- {n}");
        }
        let _ = writeln!(out, "\n![{}]({}.svg)\n", self.title, self.file);
        out
    }

    /// Draws one panel per plotted metric, one line per target.
    pub fn svg(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let panels: Vec<&Metric> = self.metrics.iter().filter(|m| m.plot).collect();
        if panels.is_empty() {
            return Ok(());
        }
        let root = SVGBackend::new(path, (720, 330 * panels.len() as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((panels.len(), 1));
        let xs = self.xs();
        let (xmin, xmax) = (
            *xs.first().unwrap_or(&1) as f64,
            *xs.last().unwrap_or(&10) as f64,
        );
        let (xmin, xmax) = (xmin.max(1.0) / 1.5, xmax.max(xmin + 1.0) * 1.5);
        for (area, metric) in areas.iter().zip(panels) {
            let ymax = self
                .series
                .iter()
                .flat_map(|s| s.points.iter().filter_map(|p| p.v.get(metric.key)))
                .fold(0.0f64, |a, b| a.max(*b));
            let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{}: {}", self.title, metric.header),
                    ("sans-serif", 16),
                )
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(70)
                .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..ymax)?;
            chart
                .configure_mesh()
                .x_desc(self.x_label)
                .y_desc(metric.header)
                .x_label_formatter(&|v| fmt_count(v.round() as u64))
                .draw()?;
            for s in &self.series {
                let color = match s.target {
                    "ours" => RGBColor(0x1f, 0x77, 0xb4),
                    "etcd-proxy" => RGBColor(0xd6, 0x27, 0x28),
                    _ => RGBColor(0x7f, 0x7f, 0x7f),
                };
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .filter_map(|p| Some((p.x as f64, *p.v.get(metric.key)?)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        pts.clone(),
                        color.stroke_width(2),
                    )))?
                    .label(s.target)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart.draw_series(
                    pts.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
                )?;
                // A failed point is drawn with a cross.
                chart.draw_series(
                    s.points
                        .iter()
                        .filter(|p| p.failure.is_some())
                        .filter_map(|p| Some((p.x as f64, *p.v.get(metric.key)?)))
                        .map(|(x, y)| Cross::new((x, y), 8, BLACK.stroke_width(2))),
                )?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
        Ok(())
    }
}

impl Series {
    /// An empty series.
    pub fn new(target: &'static str) -> Series {
        Series {
            target,
            points: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Whether a point has failed (later points are not run).
    pub fn has_failed(&self) -> bool {
        self.points.iter().any(|p| p.failure.is_some())
    }

    /// The "what failed first" line.
    pub fn verdict(&self) -> String {
        if let Some(p) = self.points.iter().find(|p| p.failure.is_some()) {
            let reached = self
                .points
                .iter()
                .filter(|p| p.failure.is_none())
                .map(|p| p.x)
                .max();
            format!(
                "failed at {}: {}{}",
                fmt_count(p.x),
                p.failure.as_deref().unwrap_or(""),
                reached
                    .map(|r| format!(" (last passing point {})", fmt_count(r)))
                    .unwrap_or_default()
            )
        } else if let Some(max) = self.points.iter().map(|p| p.x).max() {
            let mut s = format!("nothing failed up to {}", fmt_count(max));
            if !self.skipped.is_empty() {
                let _ = write!(
                    s,
                    " (not run: {})",
                    self.skipped
                        .iter()
                        .map(|(x, why)| format!("{} – {why}", fmt_count(*x)))
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            s
        } else {
            "not run".to_string()
        }
    }
}
