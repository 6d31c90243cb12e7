//! Plots as SVG and PNG: offered vs forwarded with confidence bars, NDR
//! and PDR per frame size, forwarded rate per router per isolation step,
//! CPU per thread class.

use crate::run::{Point, Results};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A line with error bars: (x, y, half-width of the y interval).
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64, f64)>,
}

pub enum Chart {
    Lines {
        title: String,
        x: String,
        y: String,
        series: Vec<Series>,
        /// Draw y = x (forwarded = offered).
        diagonal: bool,
        /// Vertical dashed lines at these x values, labelled (the
        /// generator's ceiling per frame size).
        marks: Vec<(String, f64)>,
    },
    Bars {
        title: String,
        y: String,
        groups: Vec<String>,
        /// One bar per group per series: (mean, ci).
        series: Vec<(String, Vec<(f64, f64)>)>,
    },
}

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The PNG backend draws text with a font it is given: DejaVu Sans.
fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let p = FONT_PATHS.iter().find(|p| Path::new(p).is_file()).ok_or(
            "no DejaVuSans.ttf for the plots: install Debian's fonts-dejavu-core (scripts/setup does)",
        )?;
        let bytes: &'static [u8] =
            Box::leak(std::fs::read(p).map_err(|e| format!("{p}: {e}"))?.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| format!("{p}: not a usable font"))?;
        }
        Ok(())
    })
    .clone()
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("plotting: {x:?}")
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        1.0
    } else {
        v * 1.1
    }
}

fn render<DB: DrawingBackend>(c: &Chart, root: DrawingArea<DB, Shift>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    match c {
        Chart::Lines {
            title,
            x,
            y,
            series,
            diagonal,
            marks,
        } => {
            let all = series.iter().flat_map(|s| s.points.iter());
            let xmax = nice_max(
                all.clone()
                    .map(|p| p.0)
                    .chain(marks.iter().map(|m| m.1))
                    .fold(0.0, f64::max),
            );
            let ymax = nice_max(all.map(|p| p.1 + p.2).fold(0.0, f64::max));
            let ymax = if *diagonal { ymax.max(xmax) } else { ymax };
            let mut ch = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..xmax, 0f64..ymax)
                .map_err(e)?;
            ch.configure_mesh().x_desc(x).y_desc(y).draw().map_err(e)?;
            if *diagonal {
                ch.draw_series(LineSeries::new(
                    [(0.0, 0.0), (xmax, xmax)],
                    BLACK.mix(0.3).stroke_width(1),
                ))
                .map_err(e)?
                .label("forwarded = offered")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.3)));
            }
            for (label, x) in marks {
                let grey = BLACK.mix(0.6);
                ch.draw_series(DashedLineSeries::new(
                    [(*x, 0.0), (*x, ymax)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey));
            }
            for (i, s) in series.iter().enumerate() {
                let col = Palette99::pick(i).to_rgba();
                ch.draw_series(LineSeries::new(
                    s.points.iter().map(|p| (p.0, p.1)),
                    col.stroke_width(2),
                ))
                .map_err(e)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], col.stroke_width(2)));
                ch.draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 3, col.filled())),
                )
                .map_err(e)?;
                ch.draw_series(s.points.iter().filter(|p| p.2 > 0.0).map(|p| {
                    ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, col.stroke_width(1), 8)
                }))
                .map_err(e)?;
            }
            ch.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(e)?;
        }
        Chart::Bars {
            title,
            y,
            groups,
            series,
        } => {
            let ymax = nice_max(
                series
                    .iter()
                    .flat_map(|s| s.1.iter().map(|b| b.0 + b.1))
                    .fold(0.0, f64::max),
            );
            let n = series.len().max(1) as f64;
            let mut ch = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..groups.len() as f64, 0f64..ymax)
                .map_err(e)?;
            let labels = groups.clone();
            ch.configure_mesh()
                .disable_x_mesh()
                .x_labels(groups.len() * 2 + 1)
                .x_label_formatter(&move |v| {
                    let i = v.floor() as usize;
                    if (v - i as f64 - 0.5).abs() < 0.01 {
                        labels.get(i).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .y_desc(y)
                .draw()
                .map_err(e)?;
            for (si, (name, bars)) in series.iter().enumerate() {
                let col = Palette99::pick(si).to_rgba();
                let w = 0.8 / n;
                ch.draw_series(bars.iter().enumerate().map(|(g, b)| {
                    let x0 = g as f64 + 0.1 + si as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.9, b.0)], col.filled())
                }))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], col.filled()));
                ch.draw_series(
                    bars.iter()
                        .enumerate()
                        .filter(|(_, b)| b.1 > 0.0)
                        .map(|(g, b)| {
                            let xm = g as f64 + 0.1 + si as f64 * w + w * 0.45;
                            ErrorBar::new_vertical(
                                xm,
                                b.0 - b.1,
                                b.0,
                                b.0 + b.1,
                                BLACK.stroke_width(1),
                                8,
                            )
                        }),
                )
                .map_err(e)?;
            }
            ch.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(e)?;
        }
    }
    root.present().map_err(e)
}

/// Writes `stem`.svg and `stem`.png; returns both paths.
pub fn save(dir: &Path, stem: &str, c: &Chart) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    render(c, SVGBackend::new(&svg, (960, 600)).into_drawing_area())?;
    render(c, BitMapBackend::new(&png, (960, 600)).into_drawing_area())?;
    Ok(vec![svg, png])
}

/// The charts a run's results call for.
/// A plain line chart: no diagonal, no marks.
fn lines(title: &str, x: &str, y: &str, series: Vec<Series>) -> Chart {
    Chart::Lines {
        title: title.into(),
        x: x.into(),
        y: y.into(),
        series,
        diagonal: false,
        marks: Vec::new(),
    }
}

pub fn charts(r: &Results) -> Vec<(&'static str, Chart)> {
    let mut out = Vec::new();
    let kpps = |x: f64| x / 1e3;
    // Offered vs forwarded, one line per router and frame size.
    let mut keys: Vec<(String, String)> = Vec::new();
    for p in &r.points {
        if !keys.contains(&(p.label.clone(), p.frame.clone())) {
            keys.push((p.label.clone(), p.frame.clone()));
        }
    }
    if !r.points.is_empty() {
        let series = keys
            .iter()
            .map(|(l, f)| Series {
                name: format!("{l} {f}B"),
                points: r
                    .points
                    .iter()
                    .filter(|p| &p.label == l && &p.frame == f)
                    .map(|p| {
                        (
                            kpps(p.offered_pps.mean),
                            kpps(p.forwarded_pps.mean),
                            kpps(p.forwarded_pps.ci),
                        )
                    })
                    .collect(),
            })
            .collect();
        out.push((
            "forwarded",
            Chart::Lines {
                title: "Forwarded vs offered load".into(),
                x: "offered (kpps)".into(),
                y: "forwarded (kpps)".into(),
                series,
                diagonal: true,
                marks: r
                    .generator_ceiling
                    .iter()
                    .map(|c| (format!("generator alone {}B", c.frame), kpps(c.offered_pps)))
                    .collect(),
            },
        ));
        // CPU per thread class against offered load.
        let mut cpu_series: Vec<Series> = Vec::new();
        for (l, f) in &keys {
            let ps: Vec<_> = r
                .points
                .iter()
                .filter(|p| &p.label == l && &p.frame == f)
                .collect();
            let mut classes: Vec<String> = ps.iter().flat_map(|p| p.cpu.keys().cloned()).collect();
            classes.sort();
            classes.dedup();
            for c in classes {
                cpu_series.push(Series {
                    name: format!("{l} {f}B {}", c.rsplit('/').next().unwrap_or(&c)),
                    points: ps
                        .iter()
                        .map(|p| {
                            (
                                kpps(p.offered_pps.mean),
                                *p.cpu.get(&c).unwrap_or(&0.0),
                                0.0,
                            )
                        })
                        .collect(),
                });
            }
        }
        out.push((
            "cpu",
            lines(
                "CPU per thread class",
                "offered (kpps)",
                "% of one core",
                cpu_series,
            ),
        ));
        // Latency of the sampled flow against offered load, where measured.
        let mut lat_series: Vec<Series> = Vec::new();
        for (l, f) in &keys {
            for (what, pick) in [
                (
                    "p50",
                    (|p: &Point| p.latency_p50_us) as fn(&Point) -> Option<crate::stats::Summary>,
                ),
                ("p99", |p: &Point| p.latency_p99_us),
            ] {
                let points: Vec<(f64, f64, f64)> = r
                    .points
                    .iter()
                    .filter(|p| &p.label == l && &p.frame == f)
                    .filter_map(|p| pick(p).map(|s| (kpps(p.offered_pps.mean), s.mean, s.ci)))
                    .collect();
                if !points.is_empty() {
                    lat_series.push(Series {
                        name: format!("{l} {f}B {what}"),
                        points,
                    });
                }
            }
        }
        if !lat_series.is_empty() {
            out.push((
                "latency",
                lines(
                    "Latency of the sampled flow",
                    "offered (kpps)",
                    "µs",
                    lat_series,
                ),
            ));
        }
        // Per CPU: busy and softirq share against offered load.
        let mut core_series: Vec<Series> = Vec::new();
        for (l, f) in &keys {
            let ps: Vec<_> = r
                .points
                .iter()
                .filter(|p| &p.label == l && &p.frame == f)
                .collect();
            let mut cpus: Vec<u32> = ps
                .iter()
                .flat_map(|p| p.cores.iter().map(|c| c.cpu))
                .collect();
            cpus.sort_unstable();
            cpus.dedup();
            for cpu in cpus {
                for (what, pick) in [
                    (
                        "busy",
                        (|c: &crate::cpu::CoreUse| 100.0 - c.idle)
                            as fn(&crate::cpu::CoreUse) -> f64,
                    ),
                    ("softirq", |c: &crate::cpu::CoreUse| c.softirq),
                ] {
                    core_series.push(Series {
                        name: format!("{l} {f}B cpu{cpu} {what}"),
                        points: ps
                            .iter()
                            .filter_map(|p| {
                                let c = p.cores.iter().find(|c| c.cpu == cpu)?;
                                Some((kpps(p.offered_pps.mean), pick(c), 0.0))
                            })
                            .collect(),
                    });
                }
            }
        }
        if core_series.iter().any(|s| !s.points.is_empty()) {
            out.push((
                "cores",
                lines(
                    "CPU per core (host-wide)",
                    "offered (kpps)",
                    "% of the CPU",
                    core_series,
                ),
            ));
        }
    }
    if !r.ndr_pdr.is_empty() {
        let mut frames: Vec<String> = r.ndr_pdr.iter().map(|x| x.frame.clone()).collect();
        frames.dedup();
        let mut labels: Vec<String> = r.ndr_pdr.iter().map(|x| x.label.clone()).collect();
        labels.dedup();
        let mut series = Vec::new();
        for l in &labels {
            for (what, pick) in [("NDR", true), ("PDR", false)] {
                series.push((
                    format!("{l} {what}"),
                    frames
                        .iter()
                        .map(|f| {
                            r.ndr_pdr
                                .iter()
                                .find(|x| &x.label == l && &x.frame == f)
                                .map_or((0.0, 0.0), |x| {
                                    let s = if pick { x.ndr_pps } else { x.pdr_pps };
                                    (kpps(s.mean), kpps(s.ci))
                                })
                        })
                        .collect(),
                ));
            }
        }
        out.push((
            "ndr_pdr",
            Chart::Bars {
                title: "Zero-loss (NDR) and partial-drop (PDR) rate per frame size".into(),
                y: "kpps".into(),
                groups: frames.iter().map(|f| format!("{f}B")).collect(),
                series,
            },
        ));
    }
    if !r.scale.is_empty() {
        // Aggregate forwarded rate against the number of routers, one line
        // per per-router rate.
        let mut rates: Vec<u64> = r
            .scale
            .iter()
            .filter(|p| !p.baseline_only)
            .map(|p| p.rate_pps)
            .collect();
        rates.sort_unstable();
        rates.dedup();
        let series = rates
            .iter()
            .map(|&rate| Series {
                name: format!("{:.1} kpps each", kpps(rate as f64)),
                points: r
                    .scale
                    .iter()
                    .filter(|p| p.rate_pps == rate && !p.baseline_only)
                    .map(|p| {
                        (
                            p.routers as f64,
                            kpps(p.aggregate_pps.mean),
                            kpps(p.aggregate_pps.ci),
                        )
                    })
                    .collect(),
            })
            .collect();
        out.push((
            "scale",
            lines(
                "Aggregate forwarded rate against routers sharing the CPUs",
                "routers",
                "aggregate forwarded (kpps)",
                series,
            ),
        ));
    }
    if !r.migration_points.is_empty() {
        out.extend(migration_charts(r));
    }
    if !r.isolation.is_empty() {
        let series = per_router(r, |p| {
            (kpps(p.forwarded_pps.mean), kpps(p.forwarded_pps.ci))
        });
        out.push((
            "isolation",
            lines(
                "Forwarded rate per router per step",
                "step",
                "forwarded (kpps)",
                series,
            ),
        ));
        let cpu = per_router(r, |p| {
            let own: f64 = p
                .cpu
                .iter()
                .filter(|(k, _)| {
                    k.starts_with(&format!("{}/", p.router)) && !k.ends_with("/cgroup")
                })
                .map(|(_, v)| v)
                .sum();
            (own, 0.0)
        });
        // The forwarded rate over time through the steps: each router's
        // first repetition of every step, one after the other.
        let mut labels: Vec<(String, String)> = Vec::new();
        for t in &r.trials {
            if !labels.iter().any(|(n, _)| *n == t.router) {
                labels.push((t.router.clone(), t.label.clone()));
            }
        }
        let timeline: Vec<Series> = labels
            .iter()
            .map(|(router, label)| {
                let mut x0 = 0.0;
                let mut points = Vec::new();
                for t in r
                    .trials
                    .iter()
                    .filter(|t| &t.router == router && t.repetition == 0)
                {
                    let bin = t.timeline.bin_ms / 1e3;
                    for (i, pps) in t.timeline.forwarded_pps.iter().enumerate() {
                        points.push((x0 + i as f64 * bin, kpps(*pps), 0.0));
                    }
                    x0 += t.timeline.forwarded_pps.len() as f64 * bin;
                }
                Series {
                    name: label.clone(),
                    points,
                }
            })
            .collect();
        if timeline.iter().any(|s| !s.points.is_empty()) {
            out.push((
                "timeline",
                lines(
                    "Forwarded rate over time, 10 ms bins, steps one after the other",
                    "s",
                    "forwarded (kpps)",
                    timeline,
                ),
            ));
        }
        out.push((
            "cpu",
            lines(
                "CPU of each router's threads per step",
                "step",
                "% of one core",
                cpu,
            ),
        ));
    }
    out
}

/// Migrate mode: downtime, duration and sink gap, and data moved, against
/// the offered cross traffic (confidence bars); and the forwarded rate in
/// 10 ms bins through each rate's first migration, its start and end
/// marked.
fn migration_charts(r: &Results) -> Vec<(&'static str, Chart)> {
    let mut labels: Vec<String> = Vec::new();
    for p in &r.migration_points {
        if !labels.contains(&p.label) {
            labels.push(p.label.clone());
        }
    }
    let series = |name: &str, pick: &dyn Fn(&crate::run::MigrationPoint) -> (f64, f64)| {
        labels
            .iter()
            .map(|l| Series {
                name: format!("{name} {l}"),
                points: r
                    .migration_points
                    .iter()
                    .filter(|p| &p.label == l)
                    .map(|p| {
                        let (v, ci) = pick(p);
                        (p.offered_pps.mean / 1e3, v, ci)
                    })
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let mut times = series("qemu downtime", &|p| (p.downtime_ms.mean, p.downtime_ms.ci));
    times.extend(series("longest sink gap", &|p| {
        (p.longest_gap_ms.mean, p.longest_gap_ms.ci)
    }));
    times.extend(series("total time", &|p| {
        (p.total_time_ms.mean, p.total_time_ms.ci)
    }));
    let data = series("RAM moved", &|p| {
        (p.ram_transferred_mb.mean, p.ram_transferred_mb.ci)
    });
    let mut trace = Vec::new();
    let mut marks = Vec::new();
    for m in r.migrations.iter().filter(|m| m.repetition == 0) {
        let bin = m.timeline.bin_ms / 1e3;
        trace.push(Series {
            name: format!("{} at {} kpps", m.label, m.rate_pps / 1000),
            points: m
                .timeline
                .forwarded_pps
                .iter()
                .enumerate()
                .map(|(i, pps)| (i as f64 * bin, pps / 1e3, 0.0))
                .collect(),
        });
        let at = |k: &str| m.report[k].as_f64().unwrap_or(0.0) / 1e3;
        let kp = m.rate_pps / 1000;
        marks.push((format!("start {kp}k"), at("started_ms")));
        marks.push((format!("end {kp}k"), at("ended_ms")));
    }
    vec![
        (
            "migration",
            lines(
                "Migration: qemu downtime, longest silence at the sink, total time",
                "offered cross traffic (kpps)",
                "ms",
                times,
            ),
        ),
        (
            "migration_data",
            lines(
                "Migration: RAM moved",
                "offered cross traffic (kpps)",
                "MB",
                data,
            ),
        ),
        (
            "migration_trace",
            Chart::Lines {
                title: "Forwarded rate through the first migration at each rate, 10 ms bins".into(),
                x: "s from the trial's start".into(),
                y: "forwarded (kpps)".into(),
                series: trace,
                diagonal: false,
                marks,
            },
        ),
    ]
}

/// One line per router across the isolation steps; `y` gives a point's
/// value and confidence half-width.
fn per_router(r: &Results, y: impl Fn(&Point) -> (f64, f64)) -> Vec<Series> {
    (0..r.isolation[0].routers.len())
        .map(|i| Series {
            name: r.isolation[0].routers[i].label.clone(),
            points: r
                .isolation
                .iter()
                .map(|s| {
                    let (v, ci) = y(&s.routers[i]);
                    ((s.step + 1) as f64, v, ci)
                })
                .collect(),
        })
        .collect()
}

/// Writes every chart; returns the files written.
pub fn all(dir: &Path, r: &Results) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for (stem, c) in charts(r) {
        files.extend(save(dir, stem, &c)?);
    }
    Ok(files)
}
