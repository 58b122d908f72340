//! Backtest output: the summary table, and a self-contained HTML report
//! with inline SVG plots (cumulative spend and revenue, regret, decisions
//! over time). Plain SVG keeps the report viewable anywhere and the build
//! free of a plotting stack.

use std::fmt::Write;

use dlft_core::backtest::Point;

use crate::backtest::{RefundVariant, Variant};

fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

fn params(v: &Variant) -> String {
    if v.params.is_empty() {
        "policy".into()
    } else {
        v.params.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(" ")
    }
}

/// The summary table, one line per variant.
pub fn table(variants: &[Variant]) -> String {
    let mut out = String::new();
    let cur = variants.first().map_or("", |v| v.currency.as_str());
    let _ = writeln!(
        out,
        "{:<36} {:>5} {:>7} {:>7} {:>7} {:>12} {:>12} {:>9} {:>12} {:>12}",
        "variant",
        "kills",
        "losers",
        "winners",
        "missed",
        format!("saved {cur}"),
        format!("forgone {cur}"),
        "purch.",
        format!("profit Δ {cur}"),
        format!("regret {cur}")
    );
    for v in variants {
        let t = &v.totals;
        let _ = writeln!(
            out,
            "{:<36} {:>5} {:>7} {:>7} {:>7} {:>12} {:>12} {:>9} {:>12} {:>12}",
            params(v),
            t.kills,
            t.losers_killed,
            t.winners_killed,
            t.losers_missed,
            money(t.spend_saved_cents),
            money(t.revenue_forgone_cents),
            t.purchases_forgone,
            money(t.profit_policy_cents - t.profit_history_cents),
            money(t.regret_cents),
        );
    }
    if let Some(v) = variants.first() {
        let t = &v.totals;
        let _ = writeln!(
            out,
            "history: {} entities, {} ads, {} rows; spend {} {cur}, revenue {} {cur}, profit {} {cur}; hindsight best {} {cur}",
            v.entities.len(),
            t.ads,
            t.rows,
            money(t.spend_history_cents),
            money(t.revenue_history_cents),
            money(t.profit_history_cents),
            money(t.profit_oracle_cents),
        );
    }
    out
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const PAD: f64 = 48.0;

struct Line<'a> {
    label: &'a str,
    color: &'a str,
    ys: Vec<f64>,
}

/// A chart's frame: the plot area, five ticks with labels and grid lines
/// on each axis (days since the history's start; `y_unit`), the axes'
/// titles, and the chart's own marks (`body`) on top.
fn frame(title: &str, y_unit: &str, lo: f64, hi: f64, xs: &[f64], body: &str) -> String {
    let (x0, x1) = (xs.first().copied().unwrap_or(0.0), xs.last().copied().unwrap_or(1.0));
    let (bottom, right) = (H - 28.0, W - 8.0);
    let mut axes = String::new();
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let v = lo + (hi - lo) * f;
        let y = scale(v, lo, hi, bottom, 8.0);
        let _ = write!(
            axes,
            "<line x1=\"{PAD}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            y + 3.0,
            fmt_tick(v, hi - lo)
        );
        let d = x0 + (x1 - x0) * f;
        let x = scale(d, x0, x1, PAD, right);
        let _ = write!(
            axes,
            "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#999\"/>\
             <text x=\"{x:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            bottom + 4.0,
            bottom + 14.0,
            fmt_tick(d, x1 - x0)
        );
    }
    format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\">\
         {axes}<rect x=\"{PAD}\" y=\"8\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">days since the history's start</text>\
         <text transform=\"rotate(-90)\" x=\"{}\" y=\"10\" font-size=\"10\" text-anchor=\"middle\">{}</text>\
         {body}</svg></figure>\n",
        esc(title),
        right - PAD,
        bottom - 8.0,
        (PAD + right) / 2.0,
        H - 2.0,
        -(bottom + 8.0) / 2.0,
        esc(y_unit),
    )
}

/// A tick's label: whole numbers, or one decimal on a short span; M for millions.
fn fmt_tick(v: f64, span: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if span.abs() < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn scale(v: f64, lo: f64, hi: f64, out_lo: f64, out_hi: f64) -> f64 {
    if hi <= lo { out_lo } else { out_lo + (v - lo) / (hi - lo) * (out_hi - out_lo) }
}

fn line_chart(title: &str, y_unit: &str, xs: &[f64], lines: &[Line<'_>]) -> String {
    let all = lines.iter().flat_map(|l| l.ys.iter().copied());
    let (lo, hi) = all.fold((0.0f64, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    let (x0, x1) = (xs.first().copied().unwrap_or(0.0), xs.last().copied().unwrap_or(1.0));
    let mut body = String::new();
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = xs
            .iter()
            .zip(&l.ys)
            .map(|(x, y)| format!("{:.1},{:.1}", scale(*x, x0, x1, PAD, W - 8.0), scale(*y, lo, hi, H - 28.0, 8.0)))
            .collect();
        let _ = write!(
            body,
            "<polyline class=\"mark\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{}\">{}</text>",
            l.color,
            pts.join(" "),
            PAD + 8.0,
            22.0 + 12.0 * i as f64,
            l.color,
            esc(l.label)
        );
    }
    frame(title, y_unit, lo, hi, xs, &body)
}

fn bar_chart(title: &str, y_unit: &str, xs: &[f64], ys: &[f64], color: &str) -> String {
    let hi = ys.iter().copied().fold(1.0f64, f64::max);
    let (x0, x1) = (xs.first().copied().unwrap_or(0.0), xs.last().copied().unwrap_or(1.0));
    let mut body = String::new();
    for (x, y) in xs.iter().zip(ys).filter(|(_, y)| **y > 0.0) {
        let px = scale(*x, x0, x1, PAD, W - 8.0);
        let top = scale(*y, 0.0, hi, H - 28.0, 8.0);
        let _ = write!(
            body,
            "<rect class=\"mark\" x=\"{:.1}\" y=\"{top:.1}\" width=\"3\" height=\"{:.1}\" fill=\"{color}\"/>",
            px - 1.5,
            H - 28.0 - top
        );
    }
    frame(title, y_unit, 0.0, hi, xs, &body)
}

fn days(series: &[Point]) -> Vec<f64> {
    let t0 = series.first().map_or(0, |p| p.at.0);
    series.iter().map(|p| (p.at.0 - t0) as f64 / 86_400_000.0).collect()
}

/// The report's self-check, run by the browser that shows it: how many
/// charts there are, how many drew (a non-empty box with at least one data
/// mark), and every script error or console error, written on `<body>`
/// (`data-charts`, `data-charts-drawn`, `data-errors`) where a headless
/// browser's DOM dump reads them (`tests/report_browser.rs`).
const SELF_CHECK: &str = "<script>(function(){var errors=[];\
window.addEventListener('error',function(e){errors.push(String(e.message))});\
var ce=console.error;console.error=function(){errors.push(Array.prototype.join.call(arguments,' '));ce.apply(console,arguments)};\
function check(){var svgs=document.querySelectorAll('svg'),drawn=0;\
svgs.forEach(function(s){var b=s.getBBox();if(b.width>0&&b.height>0&&s.querySelector('.mark'))drawn++});\
document.body.setAttribute('data-charts',String(svgs.length));\
document.body.setAttribute('data-charts-drawn',String(drawn));\
document.body.setAttribute('data-errors',errors.join(' | '))}\
if(document.readyState==='complete')check();else window.addEventListener('load',check)})();</script>";

/// The kill backtest's best variant: the largest profit change against
/// history, then the least regret, then the first.
pub fn best_kill(variants: &[Variant]) -> Option<usize> {
    let key = |v: &Variant| (v.totals.profit_policy_cents - v.totals.profit_history_cents, -v.totals.regret_cents);
    (0..variants.len()).rev().max_by_key(|i| key(&variants[*i]))
}

/// One bar per variant from a zero line (up: above zero), numbered, the
/// best marked ★.
fn variant_bars(caption: &str, ys: &[i64], best: Option<usize>) -> String {
    let (bw, gap, h) = (28.0, 12.0, 200.0);
    let w = PAD + ys.len() as f64 * (bw + gap) + 16.0;
    let hi = ys.iter().copied().max().unwrap_or(0).max(1) as f64;
    let lo = ys.iter().copied().min().unwrap_or(0).min(0) as f64;
    let zero = scale(0.0, lo, hi, h, 8.0);
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" role=\"img\">\
         <line x1=\"{PAD}\" y1=\"{zero:.1}\" x2=\"{w}\" y2=\"{zero:.1}\" stroke=\"#999\"/>\
         <text x=\"{}\" y=\"12\" font-size=\"10\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        esc(caption),
        h + 30.0,
        h + 30.0,
        PAD - 4.0,
        money(hi as i64),
        PAD - 4.0,
        zero + 3.0,
    );
    if lo < 0.0 {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{h}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            money(lo as i64)
        );
    }
    for (i, y) in ys.iter().enumerate() {
        let x = PAD + 8.0 + i as f64 * (bw + gap);
        let top = scale(*y as f64, lo, hi, h, 8.0);
        let (y0, y1) = if top < zero { (top, zero) } else { (zero, top) };
        let _ = write!(
            svg,
            "<rect class=\"mark\" x=\"{x:.1}\" y=\"{y0:.1}\" width=\"{bw}\" height=\"{:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}{}</text>",
            (y1 - y0).max(0.5),
            if Some(i) == best { "#238b45" } else { "#6baed6" },
            x + bw / 2.0,
            h + 14.0,
            i + 1,
            if Some(i) == best { "★" } else { "" }
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// The whole report. `command` is printed at the top, so the report says
/// how to reproduce it: the variants compared (profit change against
/// history, the best marked), their table, the best variant's decision per
/// ad, and each variant's charts over time.
pub fn html(variants: &[Variant], command: &str) -> String {
    let best = best_kill(variants);
    let cur = variants.first().map_or(String::new(), |v| esc(&v.currency));
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dlft backtest</title>\
         <style>body{font-family:sans-serif;max-width:780px;margin:2em auto}table{border-collapse:collapse;font-size:12px}\
         td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td.l,th.l{text-align:left}\
         tr.best{background:#e6f4e6}figure{margin:1em 0}pre{font-size:11px}</style></head><body>",
    );
    let _ = write!(out, "<h1>Backtest</h1><p><code>{}</code></p><pre>{}</pre>", esc(command), esc(&table(variants)));
    let deltas: Vec<i64> =
        variants.iter().map(|v| v.totals.profit_policy_cents - v.totals.profit_history_cents).collect();
    out.push_str(&variant_bars(
        &format!("Profit change against history per variant ({cur}; numbered as in the table; best marked ★)"),
        &deltas,
        best,
    ));
    let _ = write!(
        out,
        "<table><tr><th>#</th><th class=\"l\">variant</th><th>kills</th><th>losers</th><th>winners</th><th>saved</th><th>forgone</th><th>profit Δ</th><th>regret</th></tr>"
    );
    for (i, v) in variants.iter().enumerate() {
        let t = &v.totals;
        let _ = write!(
            out,
            "<tr{}><td>{}{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if Some(i) == best { " class=\"best\"" } else { "" },
            i + 1,
            if Some(i) == best { " ★" } else { "" },
            esc(&params(v)),
            t.kills,
            t.losers_killed,
            t.winners_killed,
            money(t.spend_saved_cents),
            money(t.revenue_forgone_cents),
            money(t.profit_policy_cents - t.profit_history_cents),
            money(t.regret_cents)
        );
    }
    out.push_str("</table>");
    if let Some(b) = best.map(|i| &variants[i]) {
        let t0 = b.series.first().map_or(0, |p| p.at.0);
        let kills: Vec<(&String, &dlft_core::backtest::Kill)> =
            b.entities.iter().flat_map(|(e, r)| r.kills.iter().map(move |k| (e, k))).collect();
        let _ = write!(
            out,
            "<h2>Decisions of the best variant ({}), per ad</h2><p>{} ads killed ({} losers over their whole history); \
             the other {} ran as in history.</p><table><tr><th class=\"l\">entity</th><th class=\"l\">ad</th>\
             <th>decided (day)</th><th class=\"l\">history says</th><th>spend before ({cur})</th><th>spend saved ({cur})</th>\
             <th>revenue forgone ({cur})</th></tr>",
            esc(&params(b)),
            kills.len(),
            kills.iter().filter(|(_, k)| k.was_loser).count(),
            b.totals.ads.saturating_sub(kills.len()),
        );
        for (entity, k) in kills.iter().take(500) {
            let _ = write!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.2}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(entity),
                esc(k.ad.as_str()),
                k.decided_at.0.saturating_sub(t0) as f64 / 86_400_000.0,
                if k.was_loser { "a loser" } else { "a winner" },
                money(k.matured_spend.minor),
                money(k.spend_saved.minor),
                money(k.revenue_forgone.minor)
            );
        }
        out.push_str("</table>");
    }
    for v in variants.iter().take(24) {
        let s = &v.series;
        let xs = days(s);
        let cur = esc(&v.currency);
        let f = |g: fn(&Point) -> i64| s.iter().map(|p| g(p) as f64 / 100.0).collect::<Vec<_>>();
        let _ = write!(out, "<h2>{}</h2>", esc(&params(v)));
        out.push_str(&line_chart(
            &format!("Cumulative spend and revenue ({cur})"),
            &cur,
            &xs,
            &[
                Line { label: "revenue, history", color: "#9ecae1", ys: f(|p| p.revenue_history) },
                Line { label: "revenue, policy", color: "#08519c", ys: f(|p| p.revenue_policy) },
                Line { label: "spend, history", color: "#fcae91", ys: f(|p| p.spend_history) },
                Line { label: "spend, policy", color: "#a50f15", ys: f(|p| p.spend_policy) },
            ],
        ));
        out.push_str(&line_chart(
            &format!("Regret against the hindsight-best keep/kill per ad ({cur})"),
            &cur,
            &xs,
            &[Line { label: "regret", color: "#54278f", ys: f(|p| p.regret) }],
        ));
        let kills: Vec<f64> = s.iter().map(|p| f64::from(p.kills)).collect();
        out.push_str(&bar_chart("Kill decisions per tick", "kills", &xs, &kills, "#238b45"));
    }
    out.push_str(SELF_CHECK);
    out.push_str("</body></html>\n");
    out
}

fn refund_params(v: &RefundVariant) -> String {
    if v.params.is_empty() {
        "policy".into()
    } else {
        v.params.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(" ")
    }
}

/// What a refund variant costs the brand, in minor units: paid to claims
/// that were not honest, plus honest claims' value refused. The lowest is
/// marked best.
pub fn refund_cost(v: &RefundVariant) -> i64 {
    let t = &v.totals;
    let honest = t.by_label.get("honest");
    let paid_abuse: i64 = t
        .by_label
        .iter()
        .filter(|(l, _)| l.as_str() != "honest" && l.as_str() != "unlabelled")
        .map(|(_, x)| x.paid_minor)
        .sum();
    let honest_refused = honest.map_or(0, |h| h.claimed_minor - h.paid_minor);
    paid_abuse + honest_refused
}

/// A variant's figures as the table and the report show them: claims,
/// refunded, paid, abuse stopped (count, value), honest refused,
/// chargebacks avoided, paid twice, cost.
fn refund_cells(v: &RefundVariant) -> [String; 9] {
    let t = &v.totals;
    [
        t.all.claims.to_string(),
        t.all.refunded.to_string(),
        money(t.all.paid_minor),
        t.abuse_stopped.to_string(),
        money(t.abuse_stopped_minor),
        t.honest_refused.to_string(),
        t.chargebacks_avoided.to_string(),
        t.paid_twice.to_string(),
        money(refund_cost(v)),
    ]
}

fn best_refund(variants: &[RefundVariant]) -> Option<usize> {
    (0..variants.len()).min_by_key(|&i| (refund_cost(&variants[i]), i))
}

/// The refund backtest's summary table, one line per variant; the best
/// (lowest cost) marked `*`.
pub fn refund_table(variants: &[RefundVariant]) -> String {
    let mut out = String::new();
    let cur = variants.first().map_or("", |v| v.currency.as_str());
    let best = best_refund(variants);
    let _ = writeln!(
        out,
        "  {:<40} {:>6} {:>8} {:>12} {:>7} {:>12} {:>8} {:>9} {:>6} {:>12}",
        "variant",
        "claims",
        "refunded",
        format!("paid {cur}"),
        "abuse",
        format!("stopped {cur}"),
        "honest✗",
        "cb avoid",
        "paid2×",
        format!("cost {cur}")
    );
    for (i, v) in variants.iter().enumerate() {
        let c = refund_cells(v);
        let _ = writeln!(
            out,
            "{} {:<40} {:>6} {:>8} {:>12} {:>7} {:>12} {:>8} {:>9} {:>6} {:>12}",
            if Some(i) == best { "*" } else { " " },
            refund_params(v),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
        );
    }
    let _ = writeln!(
        out,
        "abuse: claims by abusers and rings refused; honest✗: honest claims refused; cb avoid / paid2×: claims on \
         orders later charged back, refused / refunded; cost: paid to abuse + honest value refused (* lowest)"
    );
    out
}

/// The refund backtest's HTML report: the variants' costs side by side (a
/// bar each, the best marked), the summary table, and the best variant's
/// decision per case (the first 500).
pub fn refund_html(variants: &[RefundVariant], command: &str) -> String {
    let cur = variants.first().map_or("", |v| v.currency.as_str());
    let best = best_refund(variants);
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dlft refund backtest</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}\
         td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td.l,th.l{text-align:left}\
         tr.best{background:#e6f4e6}</style></head><body>\n",
    );
    let _ = writeln!(out, "<h1>Refund backtest</h1><p><code>{}</code></p>", esc(command));
    // One bar per variant: paid to abuse (red) over honest value refused (orange).
    let hi = variants.iter().map(refund_cost).max().unwrap_or(1).max(1) as f64;
    let (bw, gap, h) = (28.0, 12.0, 220.0);
    let w = PAD + variants.len() as f64 * (bw + gap) + 16.0;
    let mut svg = format!(
        "<figure><figcaption>cost per variant, {cur}: paid to abuse (red) + honest value refused (orange); \
         best marked ★</figcaption><svg viewBox=\"0 0 {w} {}\" width=\"{w}\" height=\"{}\" role=\"img\">\
         <line x1=\"{PAD}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#999\"/>\
         <text x=\"4\" y=\"16\" font-size=\"10\">{}</text><text x=\"4\" y=\"{h}\" font-size=\"10\">0</text>",
        h + 40.0,
        h + 40.0,
        money(hi as i64)
    );
    for (i, v) in variants.iter().enumerate() {
        let t = &v.totals;
        let honest = t.by_label.get("honest").map_or(0, |x| x.claimed_minor - x.paid_minor);
        let abuse = refund_cost(v) - honest;
        let x = PAD + 8.0 + i as f64 * (bw + gap);
        let ya = scale(abuse as f64, 0.0, hi, h, 8.0);
        let yh = scale((abuse + honest) as f64, 0.0, hi, h, 8.0);
        let _ = write!(
            svg,
            "<rect class=\"mark\" x=\"{x:.1}\" y=\"{ya:.1}\" width=\"{bw}\" height=\"{:.1}\" fill=\"#c0392b\"/>\
             <rect class=\"mark\" x=\"{x:.1}\" y=\"{yh:.1}\" width=\"{bw}\" height=\"{:.1}\" fill=\"#e67e22\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}{}</text>",
            h - ya,
            ya - yh,
            x + bw / 2.0,
            h + 14.0,
            i + 1,
            if Some(i) == best { "★" } else { "" }
        );
    }
    svg.push_str("</svg></figure>\n");
    out.push_str(&svg);
    out.push_str(
        "<table><tr><th>#</th><th class=\"l\">variant</th><th>claims</th><th>refunded</th><th>paid</th>\
         <th>abuse stopped</th><th>stopped value</th><th>honest refused</th><th>chargebacks avoided</th>\
         <th>paid twice</th><th>cost</th></tr>\n",
    );
    for (i, v) in variants.iter().enumerate() {
        let cells: String = refund_cells(v).iter().map(|c| format!("<td>{c}</td>")).collect();
        let _ = writeln!(
            out,
            "<tr{}><td>{}{}</td><td class=\"l\">{}</td>{cells}</tr>",
            if Some(i) == best { " class=\"best\"" } else { "" },
            i + 1,
            if Some(i) == best { " ★" } else { "" },
            esc(&refund_params(v)),
        );
    }
    out.push_str("</table>\n");
    if let Some(b) = best.map(|i| &variants[i]) {
        let _ = writeln!(
            out,
            "<h2>Decisions of the best variant ({}), per case</h2><table><tr><th class=\"l\">brand</th>\
             <th class=\"l\">claim</th><th class=\"l\">opened</th><th class=\"l\">tier</th><th>claimed</th>\
             <th>paid</th><th class=\"l\">why</th></tr>",
            esc(&refund_params(b))
        );
        for (entity, c) in b.cases.iter().flat_map(|(e, cs)| cs.iter().map(move |c| (e, c))).take(500) {
            let _ = writeln!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
                 <td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                esc(entity),
                esc(&c.claim_id),
                dlft_core::sense::wire::revolut::iso_of(c.at),
                c.tier.as_str(),
                money(c.claimed.minor),
                money(c.paid.minor),
                esc(&c.why)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str(SELF_CHECK);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_negative_and_small_values() {
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(123_456), "1234.56");
    }

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(esc("<script>\"x\"&'"), "&lt;script&gt;&quot;x&quot;&amp;&#39;");
    }
}
