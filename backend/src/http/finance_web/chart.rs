//! The inline SVG bar chart of the revenue pages (no script, no image file).

use maud::{Markup, html};

use super::labels::money;

/// One horizontal bar of a chart, in pixels from the left of the bar area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Left edge.
    pub x: u32,
    /// Width.
    pub width: u32,
}

/// Scales values to bars in an area `width` pixels wide. Returns the zero baseline and one bar
/// per value: the span from the smallest (or 0) to the largest (or 0) value fills the area,
/// positive bars grow right of the baseline, negative ones left. A value other than zero
/// gets at least one pixel.
pub fn scale_bars(values: &[i64], width: u32) -> (u32, Vec<Bar>) {
    let lo = values.iter().copied().min().unwrap_or(0).min(0);
    let hi = values.iter().copied().max().unwrap_or(0).max(0);
    let span = i128::from(hi) - i128::from(lo);
    if span == 0 || width == 0 {
        return (0, values.iter().map(|_| Bar { x: 0, width: 0 }).collect());
    }
    let w = i128::from(width);
    let at = |v: i64| -> u32 {
        let px = (i128::from(v) - i128::from(lo)) * w / span;
        u32::try_from(px.clamp(0, w)).unwrap_or(width)
    };
    let base = at(0);
    let bars = values
        .iter()
        .map(|&v| {
            let end = at(v);
            let (mut x, mut bw) = if end >= base { (base, end - base) } else { (end, base - end) };
            if v != 0 && bw == 0 {
                bw = 1;
                if v < 0 && x > 0 {
                    x -= 1;
                } else if v > 0 && x + 1 > width {
                    x = width - 1;
                }
            }
            Bar { x, width: bw }
        })
        .collect();
    (base, bars)
}

/// An inline SVG bar chart of `(label, value)` rows, values shown as money.
pub fn bar_chart(title: &str, rows: &[(String, i64)]) -> Markup {
    const LABEL_W: u32 = 200;
    const AREA_W: u32 = 460;
    const VALUE_W: u32 = 160;
    const ROW_H: u32 = 30;
    let values: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let (base, bars) = scale_bars(&values, AREA_W);
    let width = LABEL_W + AREA_W + VALUE_W;
    let height = ROW_H * u32::try_from(rows.len()).unwrap_or(0) + 10;
    // SVG elements are not void in HTML: `rect`, `line` get their end tags (`{}`).
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) role="img" aria-label=(title) {
            title { (title) }
            @for (i, ((label, value), bar)) in rows.iter().zip(&bars).enumerate() {
                @let y = u32::try_from(i).unwrap_or(0) * ROW_H + 5;
                g {
                    text class="label" x=(LABEL_W - 10) y=(y + 15) text-anchor="end" { (label) }
                    rect class=(if *value < 0 { "bar neg" } else { "bar" }) x=(LABEL_W + bar.x) y=(y)
                        width=(bar.width) height="20" rx="2" {}
                    text class="value" x=(LABEL_W + AREA_W + 10) y=(y + 15) { (money(*value)) }
                }
            }
            @if values.iter().any(|v| *v < 0) {
                line class="axis" x1=(LABEL_W + base) y1="0" x2=(LABEL_W + base) y2=(height) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let (base, bars) = scale_bars(&[100, 50, 0, 1], 400);
        assert_eq!(base, 0);
        assert_eq!(
            bars,
            vec![Bar { x: 0, width: 400 }, Bar { x: 0, width: 200 }, Bar { x: 0, width: 0 }, Bar { x: 0, width: 4 }]
        );
        // A tiny value still shows.
        let (_, bars) = scale_bars(&[1_000_000, 1], 100);
        assert_eq!(bars[1], Bar { x: 0, width: 1 });
        // Nothing, or only zeros: no bars.
        assert_eq!(scale_bars(&[], 100), (0, vec![]));
        assert_eq!(scale_bars(&[0, 0], 100), (0, vec![Bar { x: 0, width: 0 }; 2]));
        // Huge values do not overflow.
        let (_, bars) = scale_bars(&[i64::MAX, i64::MAX / 2], 100);
        assert_eq!(bars[0].width, 100);
        assert_eq!(bars[1].width, 49);
    }

    #[test]
    fn negative_bars_grow_left_of_the_baseline() {
        let (base, bars) = scale_bars(&[300, -100], 400);
        assert_eq!(base, 100);
        assert_eq!(bars, vec![Bar { x: 100, width: 300 }, Bar { x: 0, width: 100 }]);
        let (base, bars) = scale_bars(&[-10, -20], 100);
        assert_eq!(base, 100);
        assert_eq!(bars, vec![Bar { x: 50, width: 50 }, Bar { x: 0, width: 100 }]);
        for (v, b) in [(300, bars[0]), (-100, bars[1])] {
            assert!(b.x + b.width <= 400, "{v}: {b:?}");
        }
    }

    #[test]
    fn chart_escapes_labels_and_shows_money() {
        let svg = bar_chart("Doanh thu <b>", &[("Hoàn Kiếm".into(), 1_250_000), ("<x>".into(), -5_000)]).into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Hoàn Kiếm") && svg.contains("1.250.000 ₫") && svg.contains("-5.000 ₫"));
        assert!(svg.contains("&lt;x&gt;") && svg.contains("Doanh thu &lt;b&gt;"));
        assert!(!svg.contains("<x>") && !svg.contains("<b>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("class=\"bar neg\"") && svg.contains("class=\"axis\""));
        // The title is both the accessible name and the SVG's own title.
        assert!(
            svg.contains("aria-label=\"Doanh thu &lt;b&gt;\"") && svg.contains("<title>Doanh thu &lt;b&gt;</title>")
        );
        // 2 rows of 30 px and a 10 px margin; the baseline sits where 0 is (-5.000 of 1.255.000).
        assert!(svg.contains("viewBox=\"0 0 820 70\"") && svg.contains("height=\"70\""), "{svg}");
        assert!(svg.contains("<line class=\"axis\" x1=\"201\" y1=\"0\" x2=\"201\" y2=\"70\"></line>"), "{svg}");
        // Each SVG element is closed: nothing after a `rect` ends up inside it.
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
        assert_eq!(svg.matches("<g>").count(), svg.matches("</g>").count());
    }

    #[test]
    fn chart_without_negative_values_has_no_axis() {
        let svg = bar_chart("t", &[("a".into(), 10), ("b".into(), 0)]).into_string();
        assert!(!svg.contains("axis"), "{svg}");
        assert!(!svg.contains("bar neg"), "{svg}");
        assert!(svg.contains("<rect class=\"bar\" x=\"200\" y=\"5\" width=\"460\" height=\"20\" rx=\"2\">"), "{svg}");
        assert!(svg.contains("<text class=\"value\" x=\"670\" y=\"50\">0 ₫</text>"), "{svg}");
    }
}
