//! Plots of a results file with plotters, each as SVG and PNG: score against P and mean query
//! entropy against P (one line per sink/selection setting), and entropy by layer (one line per
//! P, one chart per sink/selection setting).
//!
//! Text is drawn with ab_glyph from a TrueType file found at run time (no fontconfig or
//! freetype): `$WEFT_FONT`, else DejaVu Sans where Debian's `fonts-dejavu-core` puts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{rows, Row};
use super::results::RunFile;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// Registers the plot font once for the process.
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("WEFT_FONT").ok().filter(|s| !s.is_empty());
        let candidates: Vec<String> =
            env.into_iter().chain(FONT_PATHS.iter().map(|s| s.to_string())).collect();
        let Some((path, bytes)) =
            candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
        else {
            return Err(format!(
                "no TrueType font for the plots: install DejaVu Sans (Debian: apt-get install \
                 fonts-dejavu-core) or set WEFT_FONT=/path/to/font.ttf (tried {})",
                candidates.join(", ")
            ));
        };
        // plotters keeps fonts for the whole process: leaking one file once is what it asks.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws a line chart into `<stem>.svg` and `<stem>.png`; with `log2_x` the x values are P and
/// the axis is log2 with ticks at powers of two.
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    log2_x: bool,
) -> Result<Vec<PathBuf>> {
    register_font()?;
    if series.iter().all(|s| s.points.is_empty()) {
        bail!("{title}: nothing to plot");
    }
    let tx = |x: f64| if log2_x { x.log2() } else { x };
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| tx(p.0)));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
    let xpad = ((x1 - x0) * 0.05).max(0.5);
    let ypad = ((y1 - y0) * 0.08).max(1e-3);
    let spec = ChartSpec {
        title,
        x_desc,
        y_desc,
        series,
        log2_x,
        x: (x0 - xpad, x1 + xpad),
        y: (y0 - ypad, y1 + ypad),
    };
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw(SVGBackend::new(&svg, (800, 500)).into_drawing_area(), &spec)
        .with_context(|| format!("drawing {}", svg.display()))?;
    draw(BitMapBackend::new(&png, (800, 500)).into_drawing_area(), &spec)
        .with_context(|| format!("drawing {}", png.display()))?;
    Ok(vec![svg, png])
}

struct ChartSpec<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    log2_x: bool,
    x: (f64, f64),
    y: (f64, f64),
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &ChartSpec<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(c.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(c.x.0..c.x.1, c.y.0..c.y.1)
        .map_err(e)?;
    let log2 = c.log2_x;
    let xfmt = move |x: &f64| {
        if log2 {
            let p = 2f64.powf(*x);
            if (p - p.round()).abs() < 1e-6 && (x - x.round()).abs() < 1e-6 {
                format!("{}", p.round())
            } else {
                String::new()
            }
        } else {
            format!("{x:.0}")
        }
    };
    chart
        .configure_mesh()
        .x_desc(c.x_desc)
        .y_desc(c.y_desc)
        .x_label_formatter(&xfmt)
        .x_labels(if log2 { ((c.x.1 - c.x.0) * 2.0) as usize + 1 } else { 12 })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (i, s) in c.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> =
            s.points.iter().map(|&(x, y)| (if log2 { x.log2() } else { x }, y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// All plots of a results file into `dir`; returns the files written.
pub fn plots(f: &RunFile, dir: &Path) -> Result<Vec<PathBuf>> {
    let rows = rows(f);
    let task = f.config.task.name();
    let mut by_variant: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_variant.entry(r.setting.variant_label()).or_default().push(r);
    }
    let mut out = Vec::new();
    let vs_p = |get: &dyn Fn(&Row) -> Option<f64>| -> Vec<Series> {
        by_variant
            .iter()
            .map(|(label, rs)| Series {
                label: label.clone(),
                points: rs.iter().filter_map(|r| get(r).map(|y| (r.setting.p as f64, y))).collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let acc = vs_p(&|r| r.accuracy.map(|i| i.mean * 100.0));
    if !acc.is_empty() {
        out.extend(line_chart(
            &dir.join("score_vs_p"),
            &format!("{task}: accuracy vs P"),
            "P (pieces)",
            "accuracy %",
            &acc,
            true,
        )?);
    }
    let ppl = vs_p(&|r| r.ppl.map(|i| i.mean));
    if !ppl.is_empty() {
        out.extend(line_chart(
            &dir.join("score_vs_p"),
            &format!("{task}: perplexity vs P"),
            "P (pieces)",
            "perplexity",
            &ppl,
            true,
        )?);
    }
    let ent = vs_p(&|r| r.entropy.map(|i| i.mean));
    if !ent.is_empty() {
        out.extend(line_chart(
            &dir.join("entropy_vs_p"),
            &format!("{task}: mean query entropy vs P"),
            "P (pieces)",
            "entropy (nats)",
            &ent,
            true,
        )?);
    }
    for (label, rs) in &by_variant {
        let series: Vec<Series> = rs
            .iter()
            .filter(|r| !r.entropy_by_layer.is_empty())
            .map(|r| Series {
                label: format!("P={}", r.setting.p),
                points: r
                    .entropy_by_layer
                    .iter()
                    .enumerate()
                    .map(|(l, &v)| (l as f64, v))
                    .collect(),
            })
            .collect();
        if !series.is_empty() {
            let stem = dir.join(format!("entropy_by_layer_{}", label.replace([' ', '='], "_")));
            out.extend(line_chart(
                &stem,
                &format!("{task}: query entropy by layer ({label})"),
                "layer",
                "entropy (nats)",
                &series,
                false,
            )?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("weft-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = vec![
            Series {
                label: "sink=off select=0".into(),
                points: vec![(1.0, 50.0), (2.0, 40.0), (4.0, 20.0)],
            },
            Series {
                label: "sink=on select=2".into(),
                points: vec![(1.0, 52.0), (2.0, 48.0), (4.0, 41.0)],
            },
        ];
        let files = line_chart(&dir.join("t"), "test", "P", "acc", &s, true).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("<svg") && svg.contains("sink=on select=2"));
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(line_chart(&dir.join("e"), "empty", "x", "y", &[], false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
