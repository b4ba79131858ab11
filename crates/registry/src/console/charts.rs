//! Charts as server-rendered SVG, built from numbers only (nothing a user typed reaches them).

use std::fmt::Write as _;

use tenancy_core::UsageSample;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// Storage over time: a line of the samples' sizes, the quota (when there is one) as the top.
pub fn storage(history: &[UsageSample], quota: Option<i64>) -> Option<String> {
    if history.len() < 2 {
        return None;
    }
    let top = history
        .iter()
        .map(|s| s.size_bytes)
        .chain(quota)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let first = history.first()?.sampled_at.timestamp() as f64;
    let span = (history.last()?.sampled_at.timestamp() as f64 - first).max(1.0);
    let mut points = String::new();
    for sample in history {
        let x = (sample.sampled_at.timestamp() as f64 - first) / span * WIDTH;
        let y = HEIGHT - sample.size_bytes as f64 / top * HEIGHT;
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" role=\"img\" aria-label=\"storage over time\" class=\"chart\">\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#f5f6fa\"/>"
    );
    if quota.is_some() {
        svg.push_str("<line x1=\"0\" y1=\"1\" x2=\"600\" y2=\"1\" stroke=\"#a4262c\" stroke-dasharray=\"4\"/>");
    }
    let _ = write!(
        svg,
        "<polyline fill=\"none\" stroke=\"#1d5fa8\" stroke-width=\"2\" points=\"{}\"/></svg>",
        points.trim_end()
    );
    Some(svg)
}

/// The storage quota gauge: how full, with marks at 80% and 95% (the warnings).
pub fn gauge(percent: f64) -> String {
    let filled = percent.clamp(0.0, 100.0) / 100.0 * WIDTH;
    let colour = if percent >= 95.0 {
        "#a4262c"
    } else if percent >= 80.0 {
        "#c17d11"
    } else {
        "#17713a"
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} 24\" width=\"{WIDTH}\" height=\"24\" \
         role=\"img\" aria-label=\"{percent:.1}% of the storage quota\" class=\"gauge\">\
         <rect width=\"{WIDTH}\" height=\"24\" fill=\"#e3e5ec\"/>\
         <rect width=\"{filled:.1}\" height=\"24\" fill=\"{colour}\"/>\
         <line x1=\"480\" y1=\"0\" x2=\"480\" y2=\"24\" stroke=\"#1d2330\"/>\
         <line x1=\"570\" y1=\"0\" x2=\"570\" y2=\"24\" stroke=\"#1d2330\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn the_storage_line_spans_the_chart_and_the_gauge_marks_80_and_95() {
        let now = Utc::now();
        let sample = |minutes: i64, size: i64| UsageSample {
            sampled_at: now + Duration::minutes(minutes),
            size_bytes: size,
            connections: 0,
        };
        let svg = storage(&[sample(0, 0), sample(10, 50), sample(20, 100)], Some(200)).unwrap();
        assert!(
            svg.contains("points=\"0.0,120.0 300.0,90.0 600.0,60.0\""),
            "{svg}"
        );
        assert!(
            storage(&[sample(0, 1)], None).is_none(),
            "one sample is no line"
        );
        let gauge = gauge(90.0);
        assert!(gauge.contains("width=\"540.0\"") && gauge.contains("#c17d11"));
        assert!(gauge.contains("x1=\"480\"") && gauge.contains("x1=\"570\""));
    }
}
