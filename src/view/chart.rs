//! The charts, as inline SVG drawn with `plotters`. Each has a `<title>`
//! and a `<desc>` that say in words what it shows; colours are fixed
//! values the page's style sheet re-colours for a dark theme.

use std::time::Duration;

use plotters::prelude::*;

use super::data::{ms_label, Bins, Bucket, Series};
use super::text::{esc, rfc3339, usd};

/// Series colours; the page's style sheet knows these values.
pub const BLUE: RGBColor = RGBColor(0x25, 0x63, 0xEB);
pub const RED: RGBColor = RGBColor(0xDC, 0x26, 0x26);
pub const GREEN: RGBColor = RGBColor(0x05, 0x96, 0x69);
pub const PURPLE: RGBColor = RGBColor(0x7C, 0x3A, 0xED);
/// Axis, grid lines and labels; re-coloured by the style sheet.
const AXIS: RGBColor = RGBColor(0x88, 0x88, 0x88);
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
const TEXT: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// How wide a time chart is drawn: for a screen, or for a phone (where
/// the wide one's labels would shrink below reading size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Wide,
    Narrow,
}

impl Size {
    fn pixels(self) -> (u32, u32) {
        match self {
            Size::Wide => (640, 240),
            Size::Narrow => (360, 240),
        }
    }

    /// About how many time labels fit.
    fn labels(self) -> usize {
        match self {
            Size::Wide => 5,
            Size::Narrow => 3,
        }
    }
}
const SMALL: (u32, u32) = (360, 200);

type Drawn = Result<(), String>;

/// An SVG chart of `size`, drawn by `draw`, with its title and description
/// for people who cannot see it.
fn svg(
    id: &str,
    title: &str,
    desc: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Drawn,
) -> String {
    let mut out = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    if let Err(e) = drawn {
        return format!(
            r#"<p class="note">The chart {} could not be drawn: {}</p>"#,
            esc(title),
            esc(&e)
        );
    }
    let head = format!(r#"<svg role="img" aria-labelledby="{id}-t {id}-d" class="chart""#);
    let labels = format!(
        r#"<title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        esc(title),
        esc(desc)
    );
    match out.find('>') {
        Some(end) if out.starts_with("<svg") => {
            format!("{head}{}>{labels}{}", &out[4..end], &out[end + 1..])
        }
        _ => out,
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Spans longer than this name the year on their axis.
const YEARS_MS: i64 = 300 * 86_400_000;

/// A time for an axis: its clock time, with the day when `span_ms` is
/// longer than a day, and the year when it is longer than most of one (UTC).
pub fn time_label(ms: i64, span_ms: i64, width_ms: i64) -> String {
    // 2026-11-29T11:40:56Z
    let stamp = rfc3339(ms);
    if span_ms > YEARS_MS {
        return stamp[..10].to_string();
    }
    let (date, clock) = (&stamp[5..10], &stamp[11..19]);
    let clock = if width_ms < 60_000 {
        clock
    } else {
        &clock[..5]
    };
    if span_ms <= 86_400_000 {
        clock.to_string()
    } else if width_ms >= 86_400_000 {
        date.to_string()
    } else {
        format!("{date} {}", &clock[..5])
    }
}

/// The top of a y axis over values up to `max`: a bit above, never 0.
/// A count on an axis: whole numbers only, so that the ticks between
/// small counts (0.5, 1.5) do not repeat their neighbours' labels.
fn count_label(y: &f64) -> String {
    // A tick summed from steps of 0.2 may miss 1 by a rounding error.
    match (y - y.round()).abs() < 1e-6 {
        // (-0.0 + 0.0 is 0.0: no "-0".)
        true => format!("{:.0}", y.round() + 0.0),
        false => String::new(),
    }
}

fn top(max: f64) -> f64 {
    if max > 0.0 && max.is_finite() {
        max * 1.12
    } else {
        1.0
    }
}

/// A time chart's x: ms since the start of its first bucket, with ticks
/// on round times.
type TimeX = plotters::coord::combinators::WithKeyPoints<plotters::coord::types::RangedCoordi64>;
type TimeChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<TimeX, plotters::coord::types::RangedCoordf64>>;

/// About `labels` ticks on round times (whole minutes, hours, days) between
/// `x0` and `x1`, as offsets from `x0`.
pub fn ticks(x0: i64, x1: i64, labels: usize) -> Vec<i64> {
    let step = super::data::bucket_width(x1.saturating_sub(x0), labels);
    let first = x0.div_euclid(step) * step + if x0.rem_euclid(step) == 0 { 0 } else { step };
    let all: Vec<i64> = (0..)
        .map(|i| first.saturating_add(i * step))
        .take_while(|t| *t <= x1)
        .take(10_000)
        .map(|t| t - x0)
        .collect();
    // Past the widest round step, every k-th: at most one label more.
    let k = all.len().div_ceil(labels + 1).max(1);
    all.into_iter().step_by(k).collect()
}

/// Draws a time chart's frame and returns its chart context.
fn time_frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    series: &Series,
    size: Size,
    y_top: f64,
    y_label: &dyn Fn(&f64) -> String,
) -> Result<TimeChart<'a, 'b>, String> {
    let (x0, x1) = series.span();
    let width = series.width_ms();
    let x = (0..(x1 - x0).max(1)).with_key_points(ticks(x0, x1, size.labels()));
    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .margin_right(40)
        .x_label_area_size(26)
        .y_label_area_size(58)
        .build_cartesian_2d(x, 0f64..y_top)
        .map_err(err)?;
    let x_label = |x: &i64| time_label(x0 + *x, x1 - x0, width);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(0)
        .y_labels(5)
        .x_label_formatter(&x_label)
        .y_label_formatter(y_label)
        .axis_style(AXIS)
        .bold_line_style(GRID)
        .label_style(("sans-serif", 13).into_font().color(&TEXT))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// A bar per bucket from 0 to `value`, a little narrower than the bucket.
fn bar(x0: i64, b: &Bucket, width: i64, value: f64, color: RGBColor) -> Rectangle<(i64, f64)> {
    let gap = width / 8;
    let start = b.start_ms - x0;
    Rectangle::new(
        [(start + gap, 0.0), (start + width - gap, value)],
        color.filled(),
    )
}

/// Requests per bucket, the failed part in red.
pub fn requests(id: &str, series: &Series, size: Size) -> String {
    let max = series.buckets().map(|b| b.requests).max().unwrap_or(0) as f64;
    let total: u64 = series.buckets().map(|b| b.requests).sum();
    let errors: u64 = series.buckets().map(|b| b.errors).sum();
    let busiest = series.buckets().max_by_key(|b| b.requests);
    let (x0, x1) = series.span();
    let counted = crate::core::numbers::counted;
    let mut desc = format!(
        "{} and {} in buckets of {}",
        counted(total, "request"),
        counted(errors, "error"),
        humantime::format_duration(Duration::from_millis(series.width_ms() as u64))
    );
    if let Some(b) = busiest.filter(|b| b.requests > 0) {
        desc.push_str(&format!(
            "; the busiest starts at {} with {}",
            time_label(b.start_ms, x1 - x0, series.width_ms()),
            counted(b.requests, "request")
        ));
    }
    svg(
        id,
        "Requests and errors over time",
        &desc,
        size.pixels(),
        |root| {
            let mut chart = time_frame(root, series, size, top(max), &count_label)?;
            let (w, x0) = (series.width_ms(), series.span().0);
            chart
                .draw_series(
                    series
                        .buckets()
                        .filter(|b| b.requests > b.errors)
                        .map(|b| bar(x0, b, w, b.requests as f64, BLUE)),
                )
                .map_err(err)?;
            chart
                .draw_series(
                    series
                        .buckets()
                        .filter(|b| b.errors > 0)
                        .map(|b| bar(x0, b, w, b.errors as f64, RED)),
                )
                .map_err(err)?;
            Ok(())
        },
    )
}

/// Known cost per bucket.
pub fn cost(id: &str, series: &Series, size: Size) -> String {
    let max = series.buckets().map(|b| b.cost_usd).fold(0.0, f64::max);
    let total = series.buckets().map(|b| b.cost_usd).fold(0.0, |a, b| a + b);
    let desc = format!(
        "{} in all; at most {} in one bucket of {}",
        usd(total),
        usd(max),
        humantime::format_duration(Duration::from_millis(series.width_ms() as u64))
    );
    svg(id, "Cost over time", &desc, size.pixels(), |root| {
        let mut chart = time_frame(root, series, size, top(max), &|y| usd(*y))?;
        let (w, x0) = (series.width_ms(), series.span().0);
        chart
            .draw_series(
                series
                    .buckets()
                    .filter(|b| b.cost_usd > 0.0)
                    .map(|b| bar(x0, b, w, b.cost_usd, GREEN)),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// The cache's share of each bucket's requests, as a line broken where a
/// bucket had none.
pub fn hit_rate(id: &str, series: &Series, size: Size) -> String {
    let hits: u64 = series.buckets().map(|b| b.cache_hits).sum();
    let total: u64 = series.buckets().map(|b| b.requests).sum();
    let desc = if total == 0 {
        "No requests".to_string()
    } else {
        format!(
            "{hits} of {} answered from the cache ({:.1}%)",
            crate::core::numbers::counted(total, "request"),
            hits as f64 * 100.0 / total as f64
        )
    };
    svg(
        id,
        "Cache hit rate over time",
        &desc,
        size.pixels(),
        |root| {
            let mut chart = time_frame(root, series, size, 105.0, &|y| format!("{y:.0}%"))?;
            let x0 = series.span().0;
            let half = series.width_ms() / 2;
            let mut run: Vec<(i64, f64)> = Vec::new();
            let mut runs: Vec<Vec<(i64, f64)>> = Vec::new();
            for b in series.buckets() {
                match b.hit_rate() {
                    Some(r) => run.push((b.start_ms - x0 + half, r * 100.0)),
                    None => runs.push(std::mem::take(&mut run)),
                }
            }
            runs.push(run);
            for r in runs.into_iter().filter(|r| !r.is_empty()) {
                if r.len() == 1 {
                    chart
                        .draw_series(std::iter::once(Circle::new(r[0], 3, PURPLE.filled())))
                        .map_err(err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(r, PURPLE.stroke_width(2)))
                        .map_err(err)?;
                }
            }
            Ok(())
        },
    )
}

/// One model's latency histogram, over the bins it uses.
pub fn histogram(id: &str, model: &str, bins: &Bins) -> String {
    let counts = bins.counts();
    let (lo, hi) = bins.shown();
    let parts: Vec<String> = (lo..=hi)
        .filter(|&i| counts[i] > 0)
        .map(|i| format!("{}: {}", Bins::label(i), counts[i]))
        .collect();
    let desc = if parts.is_empty() {
        "No successful attempts".to_string()
    } else {
        format!("Successful attempts by latency: {}", parts.join("; "))
    };
    let title = format!("Latency of {model}");
    let max = counts[lo..=hi].iter().copied().max().unwrap_or(0) as f64;
    svg(id, &title, &desc, SMALL, |root| {
        let step = (hi - lo + 1).div_ceil(4).max(1);
        let marks: Vec<i32> = (lo..=hi + 1).step_by(step).map(|i| i as i32).collect();
        let x = ((lo as i32)..(hi as i32 + 1)).with_key_points(marks);
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .margin_right(16)
            .x_label_area_size(26)
            .y_label_area_size(44)
            .build_cartesian_2d(x, 0f64..top(max))
            .map_err(err)?;
        let x_label = |i: &i32| ms_label(Bins::lower(usize::try_from(*i).unwrap_or(0)));
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(0)
            .y_labels(4)
            .x_label_formatter(&x_label)
            .y_label_formatter(&count_label)
            .axis_style(AXIS)
            .bold_line_style(GRID)
            .label_style(("sans-serif", 12).into_font().color(&TEXT))
            .draw()
            .map_err(err)?;
        chart
            .draw_series((lo..=hi).filter(|&i| counts[i] > 0).map(|i| {
                let i = i as i32;
                Rectangle::new(
                    [(i, 0.0), (i + 1, counts[i as usize] as f64)],
                    BLUE.filled(),
                )
                .into_dyn()
            }))
            .map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_clock_times_or_days() {
        // 2023-11-14T22:13:20Z
        let t = 1_700_000_000_000;
        assert_eq!(time_label(t, 3_600_000, 60_000), "22:13");
        assert_eq!(time_label(t, 3_600_000, 10_000), "22:13:20");
        assert_eq!(time_label(t, 7 * 86_400_000, 3_600_000), "11-14 22:13");
        assert_eq!(time_label(t, 90 * 86_400_000, 86_400_000), "11-14");
        assert_eq!(
            time_label(t, 3 * 365 * 86_400_000, 86_400_000),
            "2023-11-14"
        );
        assert_eq!(time_label(i64::MAX, 60_000, 1_000), "23:59:59");
    }

    #[test]
    fn ticks_fall_on_round_times() {
        // An hour from 10:07: ticks every 15 minutes from 10:15.
        let x0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000 + 7 * 60_000;
        let t = ticks(x0, x0 + 3_600_000, 5);
        assert_eq!(t, [8, 23, 38, 53].map(|m| m * 60_000));
        assert!(ticks(0, 0, 5).len() == 1);
        assert!(ticks(x0, x0 + 3_600_000, 3).len() <= 4);
        // Decades: at most six, evenly spaced.
        let decades = ticks(0, 20 * 365 * 86_400_000, 5);
        assert!((2..=6).contains(&decades.len()), "{decades:?}");
        assert!(decades.windows(3).all(|w| w[1] - w[0] == w[2] - w[1]));
    }

    #[test]
    fn a_chart_is_svg_with_a_title_and_a_description() {
        let mut s = Series::spanning(0, 3_600_000, 60);
        s.add(60_000, true, false, Some(0.01));
        s.add(61_000, false, false, None);
        let out = requests("r", &s, Size::Wide);
        assert!(
            out.starts_with(r#"<svg role="img" aria-labelledby="r-t r-d" class="chart" "#),
            "{out}"
        );
        assert!(out.contains(r#"<title id="r-t">Requests and errors over time</title>"#));
        assert!(out.contains("2 requests and 1 error in"), "{out}");
        assert!(out.contains("viewBox"));
        assert!(out.trim_end().ends_with("</svg>"));
        let h = histogram("h", "a/<b>", &Bins::of([12.0, 13.0, 400.0]));
        assert!(h.contains("Latency of a/&lt;b&gt;"), "escaped");
        assert!(h.contains("10–15 ms: 2; 300–500 ms: 1"), "{h}");
        let empty = hit_rate("e", &Series::spanning(0, 1000, 10), Size::Narrow);
        assert!(empty.contains(r#"viewBox="0 0 360 240""#), "{empty}");
        assert!(empty.contains("No requests"));
    }

    /// The numbers a chart writes as text, in order.
    fn numbers(svg: &str) -> Vec<String> {
        svg.split("</text>")
            .filter_map(|t| t.rsplit('>').next())
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .map(String::from)
            .collect()
    }

    #[test]
    fn an_axis_of_small_counts_names_each_count_once() {
        let mut s = Series::spanning(0, 3_600_000, 60);
        s.add(60_000, true, false, None);
        s.add(61_000, true, false, None);
        let labels = numbers(&requests("r", &s, Size::Wide));
        let mut seen = labels.clone();
        seen.dedup();
        assert_eq!(seen, labels, "{labels:?}");
        let h = numbers(&histogram("h", "m", &Bins::of([12.0, 13.0])));
        let mut seen = h.clone();
        seen.dedup();
        assert_eq!(seen, h, "{h:?}");
        let empty = numbers(&requests("e", &Series::spanning(0, 1000, 10), Size::Wide));
        let mut seen = empty.clone();
        seen.dedup();
        assert_eq!(seen, empty, "{empty:?}");
    }

    #[test]
    fn counts_are_labelled_whole() {
        assert_eq!(count_label(&2.0), "2");
        assert_eq!(count_label(&0.999_999_999_9), "1");
        assert_eq!(count_label(&0.5), "");
        assert_eq!(count_label(&1.5), "");
        assert_eq!(count_label(&-1e-9), "0");
    }
}
