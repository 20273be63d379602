//! SVG bar charts of the report, drawn with plotters.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Colours of the series, in order.
const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// One named series: a value (or none) per category.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// One value per category; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
}

/// Grouped bars, one group per category, on a log scale when `log` (values span decades).
pub fn grouped_bars(
    path: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series],
    log: bool,
) -> Result<()> {
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Err(anyhow!("{title}: nothing to plot"));
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let n = categories.len() as f64;
    let x = -0.5..n - 0.5;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70);
    let label = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 {
            categories.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let width = 0.8 / series.len().max(1) as f64;
    let bar = |c: usize, s: usize, v: f64, floor: f64| {
        let left = c as f64 - 0.4 + s as f64 * width;
        Rectangle::new(
            [(left, floor), (left + width * 0.9, v)],
            PALETTE[s % PALETTE.len()].filled(),
        )
    };
    macro_rules! draw {
        ($chart:expr, $floor:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(categories.len())
                .x_label_formatter(&label)
                .y_desc(y_label)
                .draw()
                .map_err(draw_error)?;
            for (s, serie) in series.iter().enumerate() {
                let bars = serie
                    .values
                    .iter()
                    .enumerate()
                    .filter_map(|(c, v)| v.filter(|v| *v > 0.0).map(|v| bar(c, s, v, $floor)));
                chart
                    .draw_series(bars)
                    .map_err(draw_error)?
                    .label(serie.name.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new(
                            [(x, y - 5), (x + 12, y + 5)],
                            PALETTE[s % PALETTE.len()].filled(),
                        )
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(draw_error)?;
        }};
    }
    if log {
        let floor = lo / 2.0;
        draw!(
            builder
                .build_cartesian_2d(x, (floor..hi * 3.0).log_scale())
                .map_err(draw_error)?,
            floor
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(x, 0.0..hi * 1.15)
                .map_err(draw_error)?,
            0.0
        );
    }
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log-scale chart with a gap is written as SVG naming every category and series.
    #[test]
    fn grouped_bars_write_labelled_svg() {
        let dir = std::env::temp_dir().join(format!("smartvm-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("chart.svg");
        let categories = vec!["LeNet-5".to_string(), "ResNet-18".to_string()];
        let series = [
            Series {
                name: "ours".into(),
                values: vec![Some(0.08), Some(41.0)],
            },
            Series {
                name: "theirs".into(),
                values: vec![None, Some(21.0)],
            },
        ];
        grouped_bars(&path, "latency", "ms", &categories, &series, true).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in ["LeNet-5", "ResNet-18", "ours", "theirs", "latency"] {
            assert!(svg.contains(text), "{text} is in the chart");
        }
        assert!(
            svg.matches("<rect").count() >= 3 + 2,
            "three bars and two legend keys"
        );
    }
}
