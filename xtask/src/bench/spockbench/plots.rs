//! The run's plots (issue 14), drawn with `plotters` into SVG files:
//! `lag.svg` (lag in seconds and slot backlog of every link over the run,
//! with each fault marked where it happened, a partition as the span it
//! lasted) and
//! `tps.svg` (committed transactions per second of every node).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::sampler::Sample;

const SIZE: (u32, u32) = (1000, 500);

fn err<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw {}: {e:?}", path.display())
}

/// A fault for the plots: label, start and end (equal for instant ones), in
/// seconds from the start of the run.
pub struct Marker {
    pub label: String,
    pub from_s: f64,
    pub to_s: f64,
}

/// One line of a plot: its label and its points.
type Line = (String, Vec<(f64, f64)>);

/// `lag.svg`: two panels with one line per link `origin->target`, the lag
/// in seconds from the lag view (how long after its origin commit the last
/// transaction was applied) and, below, the provider's slot backlog (WAL
/// not yet confirmed by the subscriber), which is what grows while a link
/// is cut or a subscriber is down; faults are marked on both.
pub fn lag(path: &Path, samples: &[Sample], markers: &[Marker]) -> Result<()> {
    let mut links: Vec<(String, String)> =
        samples.iter().map(|s| (s.origin.clone(), s.target.clone())).collect();
    links.sort();
    links.dedup();
    let t_max = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let series = |value: &dyn Fn(&Sample) -> Option<f64>| -> Vec<Line> {
        links
            .iter()
            .map(|(origin, target)| {
                let points = samples
                    .iter()
                    .filter(|s| &s.origin == origin && &s.target == target)
                    .filter_map(|s| value(s).map(|v| (s.t_s, v)))
                    .collect();
                (format!("{origin}->{target}"), points)
            })
            .collect()
    };
    let lag_s = series(&|s: &Sample| s.lag_s);
    let backlog = series(&|s: &Sample| s.backlog_bytes.map(|b| b as f64 / 1024.0));
    let root = SVGBackend::new(path, (SIZE.0, SIZE.1 * 2)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (top, bottom) = root.split_vertically(SIZE.1);
    panel(path, &top, "replication lag per link (s)", "lag (s)", &lag_s, markers, t_max, 0.1)?;
    panel(path, &bottom, "slot backlog per link (kB)", "backlog (kB)", &backlog, markers, t_max, 1.0)?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// One panel of `lag.svg`: `lines` over the run, with the fault markers.
#[allow(clippy::too_many_arguments)]
fn panel(
    path: &Path,
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    lines: &[Line],
    markers: &[Marker],
    t_max: f64,
    y_min_max: f64,
) -> Result<()> {
    let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)).fold(y_min_max, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc("seconds into the run").y_desc(y_desc).draw().map_err(err(path))?;
    for m in markers {
        let style = RGBAColor(200, 0, 0, 0.15);
        if m.to_s > m.from_s {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(m.from_s, 0.0), (m.to_s, y_max)],
                style.filled(),
            )))
        } else {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(m.from_s, 0.0), (m.from_s, y_max)], RED)))
        }
        .map_err(err(path))?;
        chart
            .draw_series(std::iter::once(Text::new(
                m.label.clone(),
                (m.from_s, y_max * 0.97),
                ("sans-serif", 12),
            )))
            .map_err(err(path))?;
    }
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err(path))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err(path))?;
    Ok(())
}

/// `tps.svg`: `(t_s, node, tps)` points, one line per node.
pub fn tps(path: &Path, points: &[(f64, String, f64)], markers: &[Marker]) -> Result<()> {
    let mut nodes: Vec<String> = points.iter().map(|p| p.1.clone()).collect();
    nodes.sort();
    nodes.dedup();
    let t_max = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.iter().map(|p| p.2).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("committed transactions per second per node", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err(path))?;
    chart.configure_mesh().x_desc("seconds into the run").y_desc("tps").draw().map_err(err(path))?;
    for m in markers {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(m.from_s, 0.0), (m.from_s, y_max)], RED)))
            .map_err(err(path))?;
    }
    for (i, node) in nodes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series: Vec<(f64, f64)> = points.iter().filter(|p| &p.1 == node).map(|p| (p.0, p.2)).collect();
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))
            .map_err(err(path))?
            .label(node.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// A bar chart of `(label, value)` pairs (`compare`).
pub fn bars(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    let y_max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0f64..y_max)
        .map_err(err(path))?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(err(path))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.1)],
                Palette99::pick(i).filled(),
            );
            r.set_margin(0, 0, 10, 10);
            r
        }))
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_their_series() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<Sample> = (0..10)
            .map(|t| Sample {
                t_s: f64::from(t),
                origin: "n1".into(),
                target: "n2".into(),
                lag_s: Some(f64::from(t) / 10.0),
                ..Sample::default()
            })
            .collect();
        let markers = [Marker { label: "partition:n1-n2".into(), from_s: 3.0, to_s: 6.0 }];
        lag(&dir.path().join("lag.svg"), &samples, &markers).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("lag.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{svg:.300}");
        assert!(svg.contains("n1-&gt;n2") || svg.contains("n1->n2"), "no legend for the link");
        assert!(svg.contains("partition:n1-n2"));
        tps(&dir.path().join("tps.svg"), &[(1.0, "n1".into(), 100.0), (2.0, "n1".into(), 98.0)], &[])
            .unwrap();
        bars(&dir.path().join("b.svg"), "MST", &[("a".into(), 1.0), ("b".into(), 2.0)]).unwrap();
        assert!(std::fs::read_to_string(dir.path().join("b.svg")).unwrap().contains("MST"));
    }
}
